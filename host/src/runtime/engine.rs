//! The wasmtime engine shared by every plugin: configuration, the epoch ticker that enforces
//! time budgets, compiling components once (cached by content hash), and the contract check.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{CallContext, MucPlugin, MucPluginPre};

/// How often the epoch advances; time budgets are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The contract this host implements (`wit/muc-plugin.wit`).
pub const CONTRACT_PACKAGE: &str = "muc:plugin";
pub const CONTRACT_VERSION: (u64, u64, u64) = (1, 5, 0);

pub struct PluginEngine {
    engine: Engine,
    linker: Linker<CallContext>,
    /// Where compiled components are kept; `None` compiles every time.
    cache_dir: Option<PathBuf>,
}

/// A compiled, checked, linked component, ready to instantiate any number of times.
#[derive(Clone)]
pub struct CompiledPlugin {
    pub pre: MucPluginPre<CallContext>,
    /// SHA-256 of the component file, hex.
    pub hash: String,
    /// The contract version the component exports, e.g. `1.0.0`.
    pub contract: String,
}

impl PluginEngine {
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginEngine> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        // Rust's std on wasip2 imports WASI; the context gives it no files, network or env.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        MucPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |ctx| ctx)?;
        Ok(PluginEngine {
            engine,
            linker,
            cache_dir,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or loads from the cache) the component at `path`, checks it implements this
    /// host's contract, and links it.
    pub fn compile(&self, path: &Path) -> Result<CompiledPlugin> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))?;
        let hash = format!("{:x}", Sha256::digest(&bytes));
        let component = compile_cached(&self.engine, self.cache_dir.as_deref(), &bytes, &hash)
            .with_context(|| format!("compiling plugin {}", path.display()))?;
        let contract = self.check_contract(&component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the plugin imports something this host does not provide")?;
        Ok(CompiledPlugin {
            pre: MucPluginPre::new(instance_pre)?,
            hash,
            contract,
        })
    }

    /// The component must export `muc:plugin/guest@MAJOR.x.y` with this host's major version.
    fn check_contract(&self, component: &Component) -> Result<String> {
        let component_type = component.component_type();
        let exported: Vec<&str> = component_type
            .exports(&self.engine)
            .map(|(name, _)| name)
            .collect();
        let prefix = format!("{CONTRACT_PACKAGE}/guest@");
        let Some(version) = exported.iter().find_map(|name| name.strip_prefix(&prefix)) else {
            bail!(
                "not a MUC plugin: it exports [{}], not {prefix}{}",
                exported.join(", "),
                host_contract()
            );
        };
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok());
        if major != Some(CONTRACT_VERSION.0) {
            bail!(
                "the plugin implements contract {version}, this host implements {}: major versions differ",
                host_contract()
            );
        }
        Ok(version.to_string())
    }
}

/// Compiles a component, or loads it from `cache_dir` where an earlier compile of the same bytes
/// (`hash`) by a compatible engine left it.
pub fn compile_cached(
    engine: &Engine,
    cache_dir: Option<&Path>,
    bytes: &[u8],
    hash: &str,
) -> Result<Component> {
    let Some(dir) = cache_dir else {
        return Ok(Component::new(engine, bytes)?);
    };
    let mut compatibility = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut compatibility);
    let file = dir.join(format!("{hash}-{:016x}.cwasm", compatibility.finish()));
    if file.exists() {
        // SAFETY: the file was written by `Component::serialize` of this engine version and
        // configuration (both are in its name) into the host's own cache directory.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(component) => return Ok(component),
            Err(error) => {
                tracing::warn!(?file, %error, "ignoring an unreadable compiled component")
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    // The cache only spares the next start a compile: failing to fill it (a full disk) is
    // said, and the component compiled here is used all the same.
    if let Err(error) = store_compiled(dir, &file, &component) {
        tracing::warn!(?file, "could not cache the compiled component: {error:#}");
    }
    Ok(component)
}

/// Writes `component` to `file` whole or not at all: into a temporary file beside it, synced,
/// then renamed. The temporary file is removed whatever fails. Several hosts (or tests) may
/// compile the same component at once: each writes its own temporary file, and the renames
/// race harmlessly to the same content.
fn store_compiled(dir: &Path, file: &Path, component: &Component) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    let serialized = component.serialize()?;
    let name = file
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("component");
    let mut partial = tempfile::Builder::new()
        .prefix(name)
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("making a file in {}", dir.display()))?;
    let written = partial
        .write_all(&serialized)
        .and_then(|()| partial.as_file().sync_all());
    written.with_context(|| format!("writing {}", partial.path().display()))?;
    partial
        .persist(file)
        .with_context(|| format!("renaming to {}", file.display()))?;
    Ok(())
}

pub fn host_contract() -> String {
    let (major, minor, patch) = CONTRACT_VERSION;
    format!("{major}.{minor}.{patch}")
}

/// Advances the engine's epoch every tick for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("spawning the epoch ticker");
}
