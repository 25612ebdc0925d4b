//! Compiling an extension: the component is compiled (or loaded from the host's cache), linked
//! against the extension world only, and asked to `describe` itself under the host's limits
//! before it may enter the catalog.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::catalog::Entry;
use super::engine::extension_engine;
use super::limits::{AskedLimits, ExtensionLimits, Granted};
use super::sandbox::{ExtensionContext, Instance, RoomExtension, RoomExtensionPre};
use crate::wasm::{budget_ticks, compile_cached};

/// The WASI poll interface of wasmtime-wasi 48 (guests importing an older 0.2 match it).
const WASI_POLL: &str = "wasi:io/poll@0.2.12";
/// The contract this host speaks (`wit/extension`), and the major version it accepts.
const CONTRACT: &str = "muc:extension@1.0.0";
const CONTRACT_PACKAGE: &str = "muc:extension/";
const CONTRACT_MAJOR: &str = "1.";

/// Compiles extensions for their own engine (see [`super::engine`]); cheap to clone, usable from
/// any thread (so a new version is compiled off the core thread).
#[derive(Clone)]
pub struct ExtensionCompiler {
    engine: Engine,
    linker: Arc<Linker<ExtensionContext>>,
    cache_dir: Option<PathBuf>,
    limits: ExtensionLimits,
}

/// An extension compiled, checked and described, ready to instantiate per room.
#[derive(Clone)]
pub struct Compiled {
    pub entry: Entry,
    pub bytes: Arc<Vec<u8>>,
    /// What each of its instances gets (`entry.limits` within the operator's ceilings).
    pub limits: Granted,
    pre: RoomExtensionPre<ExtensionContext>,
}

impl ExtensionCompiler {
    /// A compiler, and the engine its extensions run in, for the operator's `limits`.
    pub fn new(cache_dir: Option<PathBuf>, limits: ExtensionLimits) -> Result<ExtensionCompiler> {
        let engine = extension_engine(&limits)?;
        let mut linker = Linker::new(&engine);
        // Rust's std on wasip2 imports WASI: linked with an empty context (no files, sockets or
        // environment), so those calls fail inside the sandbox.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Except waiting: a blocking poll runs in the host, where no epoch deadline reaches, so
        // one sleeping extension would stop the core. Waiting traps instead.
        linker.allow_shadowing(true);
        let mut poll = linker.instance(WASI_POLL)?;
        for function in ["poll", "[method]pollable.block"] {
            poll.func_new(function, |_, _, _, _| {
                wasmtime::bail!("a room extension may not wait (wasi:io/poll)")
            })?;
        }
        linker.allow_shadowing(false);
        RoomExtension::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |ctx| ctx)?;
        Ok(ExtensionCompiler {
            engine,
            linker: Arc::new(linker),
            cache_dir,
            limits,
        })
    }

    pub fn limits(&self) -> ExtensionLimits {
        self.limits
    }

    /// Compiles, links and describes the component in `bytes`, under the operator's default
    /// limits.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled> {
        self.compile_asking(bytes, AskedLimits::default())
    }

    /// Compiles, links and describes the component in `bytes` under the limits it asks for, or
    /// says which ceiling of the operator's they are over.
    pub fn compile_asking(&self, bytes: &[u8], asked: AskedLimits) -> Result<Compiled> {
        let limits = self.limits.grant(&asked).map_err(anyhow::Error::msg)?;
        let hash = format!("{:x}", Sha256::digest(bytes));
        let component = compile_cached(&self.engine, self.cache_dir.as_deref(), bytes, &hash)
            .context("not a WebAssembly component this host can compile")?;
        refuse_other_contracts(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("it imports something a room extension is not given")?;
        let pre = RoomExtensionPre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("not a room extension ({CONTRACT}'s hooks)"))?;
        let compiled = Compiled {
            entry: Entry::default(),
            bytes: Arc::new(bytes.to_vec()),
            limits,
            pre,
        };
        // A component whose initial memory is past the cap (a Python or JavaScript module that
        // kept a hoard at its top level, which Wizer ran at build time) is refused here.
        let mut instance = compiled
            .instantiate()
            .context("it cannot be started under the host's limits")?;
        instance
            .store
            .set_epoch_deadline(budget_ticks(limits.call_budget));
        let manifest = instance
            .bindings
            .muc_extension_hooks()
            .call_describe(&mut instance.store)
            .map_err(|error| {
                let said = instance.store.data().stderr.last_line();
                anyhow::Error::from(error).context(match said {
                    Some(said) => format!("describe: {said}"),
                    None => "describe".to_string(),
                })
            })?;
        let mut entry = Entry::from_manifest(manifest, hash).map_err(anyhow::Error::msg)?;
        entry.limits = asked;
        Ok(Compiled { entry, ..compiled })
    }
}

/// A component built against another major version of the contract, refused naming both
/// (linking would only say that some interface is missing).
fn refuse_other_contracts(engine: &Engine, component: &Component) -> Result<()> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .chain(ty.exports(engine))
        .map(|(name, _)| name);
    for name in names {
        let Some(version) = name
            .strip_prefix(CONTRACT_PACKAGE)
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, version)| version)
        else {
            continue;
        };
        if !version.starts_with(CONTRACT_MAJOR) {
            anyhow::bail!(
                "it was built against muc:extension@{version}, and this host speaks {CONTRACT}: \
                 rebuild it against the contract in the host's wit/extension"
            );
        }
    }
    Ok(())
}

impl Compiled {
    /// A new instance under its granted limits.
    pub fn instantiate(&self) -> Result<Instance> {
        let limits = self.limits;
        let mut store = Store::new(
            self.pre.engine(),
            ExtensionContext::new(limits.memory_bytes),
        );
        store.limiter(|context| &mut context.memory);
        // Instantiation runs no guest code of ours, but a start function could: bound it too.
        store.set_epoch_deadline(budget_ticks(limits.call_budget));
        let bindings = self.pre.instantiate(&mut store)?;
        Ok(Instance { store, bindings })
    }
}
