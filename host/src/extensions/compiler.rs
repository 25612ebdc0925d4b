//! Compiling an extension: the component is compiled (or loaded from the host's cache), linked
//! against the extension world only, and asked to `describe` itself under the host's limits
//! before it may enter the catalog.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::catalog::Entry;
use super::sandbox::{ExtensionContext, Instance, RoomExtension, RoomExtensionPre};
use super::ExtensionLimits;
use crate::wasm::{budget_ticks, compile_cached};

/// The WASI poll interface of wasmtime-wasi 48 (guests importing an older 0.2 match it).
const WASI_POLL: &str = "wasi:io/poll@0.2.12";
/// The extension world's `room` interface (any version).
const ROOM_INTERFACE: &str = "muc:extension/room@";

/// Compiles extensions for one engine; cheap to clone, usable from any thread (so a new version
/// is compiled off the core thread).
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
    /// Whether it imports `room.info`, so may read the room's occupants (a component imports
    /// only the functions its code calls).
    pub reads_room: bool,
    pre: RoomExtensionPre<ExtensionContext>,
}

impl ExtensionCompiler {
    /// `engine` must have epoch interruption on, with a ticker (the plugin engine's does).
    pub fn new(
        engine: &Engine,
        cache_dir: Option<PathBuf>,
        limits: ExtensionLimits,
    ) -> Result<ExtensionCompiler> {
        let mut linker = Linker::new(engine);
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
            engine: engine.clone(),
            linker: Arc::new(linker),
            cache_dir,
            limits,
        })
    }

    pub fn limits(&self) -> ExtensionLimits {
        self.limits
    }

    /// Compiles, links and describes the component in `bytes`.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled> {
        let hash = format!("{:x}", Sha256::digest(bytes));
        let component = compile_cached(&self.engine, self.cache_dir.as_deref(), bytes, &hash)
            .context("not a WebAssembly component this host can compile")?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("it imports something a room extension is not given")?;
        let pre = RoomExtensionPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("not a room extension (muc:extension/hooks@0.x)")?;
        let compiled = Compiled {
            entry: Entry::default(),
            bytes: Arc::new(bytes.to_vec()),
            reads_room: imports_room_info(&self.engine, &component),
            pre,
        };
        // A component whose initial memory is past the cap (a Python or JavaScript module that
        // kept a hoard at its top level, which Wizer ran at build time) is refused here.
        let mut instance = compiled
            .instantiate(&self.limits)
            .context("it cannot be started under the host's limits")?;
        instance
            .store
            .set_epoch_deadline(budget_ticks(self.limits.call_budget));
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
        let entry = Entry::from_manifest(manifest, hash).map_err(anyhow::Error::msg)?;
        Ok(Compiled { entry, ..compiled })
    }
}

fn imports_room_info(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .filter(|(name, _)| name.starts_with(ROOM_INTERFACE))
        .any(|(_, item)| match item.ty {
            ComponentItem::ComponentInstance(room) => {
                room.exports(engine).any(|(function, _)| function == "info")
            }
            _ => true,
        })
}

impl Compiled {
    pub fn instantiate(&self, limits: &ExtensionLimits) -> Result<Instance> {
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
