//! The wasmtime engine shared by every plugin: configuration, the epoch ticker that enforces
//! time budgets, compiling components once (cached by content hash), and the contract check.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{CallContext, MucPlugin, MucPluginPre};
use crate::wasm::{compile_cached, spawn_epoch_ticker};

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

pub fn host_contract() -> String {
    let (major, minor, patch) = CONTRACT_VERSION;
    format!("{major}.{minor}.{patch}")
}
