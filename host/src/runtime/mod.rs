//! Running a MUC plugin: one instance at a time, each call one transaction, faults contained.
//!
//! A call's storage writes, timer changes and stanzas are buffered in the instance's
//! [`CallContext`]; they are applied to the [`Storage`] (durable writes on disk first) and the
//! stanzas returned for delivery only when the call returns `ok`. A trap, a blown time budget or
//! memory cap, or an `err` discards the buffer and the instance; the next one is made fresh from
//! the pre-linked component.

mod bindings;
mod engine;
#[cfg(feature = "native-plugin")]
pub mod native;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use minidom::Element;
use wasmtime::Store;

use crate::clock::Clock;
use crate::storage::{Quota, Storage, Transaction, Writes, DATA_OWNER_VERSION};
use bindings::exports::muc::plugin::guest;
use bindings::muc::plugin::types;
pub use bindings::{CallContext, MucPlugin};
pub use engine::{host_contract, CompiledPlugin, PluginEngine, EPOCH_TICK};

/// What an instance may use in one call.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall time for one call, enforced by epoch interruption (to within one tick).
    pub call_budget: Duration,
    /// Linear memory of one instance.
    pub memory_bytes: usize,
    pub quota: Quota,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            call_budget: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            quota: Quota::default(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The MUC domain the plugin serves.
    pub service: String,
    /// Service administrators' bare JIDs.
    pub admins: Vec<String>,
    pub limits: Limits,
}

/// How a call failed. Nothing it wrote was kept and nothing it sent left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The plugin trapped (a panic, an invalid operation) or could not be instantiated.
    Trap(String),
    /// The call ran past its time budget or memory cap.
    OverBudget(String),
    /// The plugin returned an error, or its writes could not be stored.
    Failed(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Trap(why) => write!(f, "trap: {why}"),
            Fault::OverBudget(why) => write!(f, "over budget: {why}"),
            Fault::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub calls: u64,
    pub faults: u64,
    pub instances_created: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub contract: String,
    /// SHA-256 of the component file.
    pub hash: String,
}

/// What the service core needs from the MUC logic, wherever it runs.
pub trait MucBackend {
    /// Hands one stanza over; on success, the stanzas to deliver.
    fn handle_stanza(&mut self, inbound: Inbound) -> Result<Vec<Element>, Fault>;
    /// Runs every timer due by now, earliest first; returns what each one sent.
    fn run_due_timers(&mut self) -> Vec<(String, Result<Vec<Element>, Fault>)>;
    /// The service is stopping.
    fn on_shutdown(&mut self) -> Result<Vec<Element>, Fault>;
    /// The store the logic's calls commit to.
    fn storage(&self) -> &Arc<Mutex<Storage>>;
}

impl MucBackend for PluginRuntime {
    fn handle_stanza(&mut self, inbound: Inbound) -> Result<Vec<Element>, Fault> {
        PluginRuntime::handle_stanza(self, inbound)
    }

    fn run_due_timers(&mut self) -> Vec<(String, Result<Vec<Element>, Fault>)> {
        PluginRuntime::run_due_timers(self)
    }

    fn on_shutdown(&mut self) -> Result<Vec<Element>, Fault> {
        PluginRuntime::on_shutdown(self)
    }

    fn storage(&self) -> &Arc<Mutex<Storage>> {
        &self.storage
    }
}

/// The envelope the host hands over with a stanza, from what it parsed.
fn wit_stanza(inbound: &Inbound) -> types::Stanza {
    types::Stanza {
        envelope: types::Envelope {
            kind: match inbound.stanza.name() {
                "message" => types::StanzaKind::Message,
                "presence" => types::StanzaKind::Presence,
                _ => types::StanzaKind::Iq,
            },
            type_: inbound.stanza.attr("type").map(str::to_string),
            from: inbound.from.to_string(),
            to: inbound.to.to_string(),
            id: inbound.stanza.attr("id").map(str::to_string),
        },
        xml: String::from(inbound.stanza),
    }
}

struct Instance {
    store: Store<CallContext>,
    bindings: MucPlugin,
}

pub struct PluginRuntime {
    plugin: CompiledPlugin,
    info: PluginInfo,
    instance: Option<Instance>,
    storage: Arc<Mutex<Storage>>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    stats: Stats,
}

/// One stanza as the host parsed it.
pub struct Inbound<'a> {
    pub stanza: &'a Element,
    /// The authenticated sender.
    pub from: &'a str,
    pub to: &'a str,
}

impl PluginRuntime {
    /// Starts a compiled plugin, and lets it take over the stored data (`upgrade`) when another
    /// version of the plugin wrote it.
    pub fn start(
        plugin: CompiledPlugin,
        storage: Arc<Mutex<Storage>>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<PluginRuntime> {
        let mut runtime = PluginRuntime {
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                contract: plugin.contract.clone(),
                hash: plugin.hash.clone(),
            },
            plugin,
            instance: None,
            storage,
            settings,
            clock,
            stats: Stats::default(),
        };
        let mut instance = runtime.instantiate()?;
        let described = instance
            .bindings
            .muc_plugin_guest()
            .call_describe(&mut instance.store)
            .map_err(anyhow::Error::from)
            .context("describe")?;
        runtime.info.name = described.name;
        runtime.info.version = described.version;
        runtime.instance = Some(instance);
        runtime.take_over_data()?;
        tracing::info!(
            plugin = runtime.info.name,
            version = runtime.info.version,
            contract = runtime.info.contract,
            hash = runtime.info.hash,
            "plugin loaded"
        );
        Ok(runtime)
    }

    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn storage(&self) -> &Arc<Mutex<Storage>> {
        &self.storage
    }

    /// Discards the current instance and makes a fresh one, as after a fault; the store, and so
    /// every room, is untouched.
    pub fn replace_instance(&mut self) -> Result<()> {
        self.instance = None;
        self.instance = Some(self.instantiate()?);
        Ok(())
    }

    /// Hands one stanza to the plugin; on success, the stanzas to deliver.
    pub fn handle_stanza(&mut self, inbound: Inbound) -> Result<Vec<Element>, Fault> {
        let stanza = wit_stanza(&inbound);
        self.call(|plugin, store| plugin.muc_plugin_guest().call_handle_stanza(store, &stanza))
    }

    pub fn on_shutdown(&mut self) -> Result<Vec<Element>, Fault> {
        self.call(|plugin, store| plugin.muc_plugin_guest().call_on_shutdown(store))
    }

    /// Runs every timer due by now, earliest first; returns what each one sent.
    pub fn run_due_timers(&mut self) -> Vec<(String, Result<Vec<Element>, Fault>)> {
        let now = self.clock.now_ms();
        let due = self.storage.lock().expect("storage lock").due_timers(now);
        due.into_iter()
            .map(|key| {
                // A timer fires once: its removal commits with the call it triggers, or alone
                // when that call fails, so a failing timer cannot fire forever.
                let outcome = self.on_timer_once(&key);
                (key, outcome)
            })
            .collect()
    }

    fn on_timer_once(&mut self, key: &str) -> Result<Vec<Element>, Fault> {
        let outcome = self.call_with(timer_removal(key), |plugin, store| {
            plugin.muc_plugin_guest().call_on_timer(store, key)
        });
        if outcome.is_err() {
            let removed = self
                .storage
                .lock()
                .expect("storage lock")
                .apply(timer_removal(key));
            if let Err(error) = removed {
                tracing::error!(key, %error, "could not remove a failed timer");
            }
        }
        outcome
    }

    fn call(
        &mut self,
        export: impl FnOnce(&MucPlugin, &mut Store<CallContext>) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<Vec<Element>, Fault> {
        self.call_with(Default::default(), export)
    }

    /// One transaction: `preset` writes, then the call's own, committed together or not at all.
    fn call_with(
        &mut self,
        preset: Writes,
        export: impl FnOnce(&MucPlugin, &mut Store<CallContext>) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<Vec<Element>, Fault> {
        self.stats.calls += 1;
        let mut instance = match self.instance.take() {
            Some(instance) => instance,
            None => match self.instantiate() {
                Ok(instance) => instance,
                Err(error) => return Err(self.fault(Fault::Trap(format!("{error:#}")))),
            },
        };
        let mut txn = Transaction::new(self.settings.limits.quota);
        txn.writes = preset;
        self.begin(&mut instance.store, txn);
        let result = export(&instance.bindings, &mut instance.store);
        let context = instance.store.data_mut();
        let txn = std::mem::take(&mut context.txn);
        let fault = match result {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => Some(Fault::Failed(reason)),
            Err(error) if context.memory.hit => Some(Fault::OverBudget(format!("{error}"))),
            Err(error) => Some(classify(error, self.settings.limits.call_budget)),
        };
        if let Some(fault) = fault {
            // The instance may be in any state: it is dropped, and its buffer with it.
            return Err(self.fault(fault));
        }
        self.instance = Some(instance);
        let stored = self.storage.lock().expect("storage lock").apply(txn.writes);
        if let Err(error) = stored {
            return Err(self.fault(Fault::Failed(format!(
                "storing the call's writes: {error:#}"
            ))));
        }
        Ok(txn.outbound)
    }

    fn begin(&self, store: &mut Store<CallContext>, txn: Transaction) {
        let context = store.data_mut();
        context.txn = txn;
        context.now_ms = self.clock.now_ms();
        context.memory.hit = false;
        let ticks = self.settings.limits.call_budget.as_millis() / EPOCH_TICK.as_millis();
        // One extra tick: the call may start just before the ticker fires.
        store.set_epoch_deadline(ticks as u64 + 1);
    }

    fn fault(&mut self, fault: Fault) -> Fault {
        self.stats.faults += 1;
        tracing::warn!(plugin = self.info.name, %fault, "plugin call failed; its effects are discarded");
        // Replace the instance now, so the next stanza does not wait for it.
        match self.instantiate() {
            Ok(instance) => self.instance = Some(instance),
            Err(error) => tracing::error!(%error, "could not make a fresh plugin instance"),
        }
        fault
    }

    /// A fresh instance, initialised. `init` may read but must not write or send.
    fn instantiate(&mut self) -> Result<Instance> {
        let context = CallContext::new(
            self.storage.clone(),
            self.settings.service.clone(),
            self.info.name.clone(),
            self.settings.limits.memory_bytes,
        );
        let mut store = Store::new(self.plugin.pre.engine(), context);
        store.limiter(|context| &mut context.memory);
        self.begin(&mut store, Transaction::default());
        let bindings = self.plugin.pre.instantiate(&mut store)?;
        let settings = guest::Settings {
            service: self.settings.service.clone(),
            admins: self.settings.admins.clone(),
        };
        bindings
            .muc_plugin_guest()
            .call_init(&mut store, &settings)?
            .map_err(|reason| anyhow::anyhow!("init failed: {reason}"))?;
        if !store.data().txn.is_empty() {
            bail!("init wrote to storage or sent a stanza; it may only read");
        }
        self.stats.instances_created += 1;
        Ok(Instance { store, bindings })
    }

    /// Records this plugin as the owner of the data, running `upgrade` first when another
    /// version owned it.
    fn take_over_data(&mut self) -> Result<()> {
        let (owner, fresh) = {
            let storage = self.storage.lock().expect("storage lock");
            (
                storage.meta(DATA_OWNER_VERSION).map(str::to_string),
                storage.is_empty(),
            )
        };
        let version = self.info.version.clone();
        let previous = match owner {
            Some(owner) if owner == version => return Ok(()),
            Some(owner) => Some(owner),
            None if fresh => None,
            // Data without an owner predates ownership records: the oldest version there is.
            None => Some("0.0.0".to_string()),
        };
        if let Some(previous) = previous {
            self.call(|plugin, store| plugin.muc_plugin_guest().call_upgrade(store, &previous))
                .map_err(|fault| {
                    anyhow::anyhow!("upgrade from {previous} to {version}: {fault}")
                })?;
            tracing::info!(
                from = previous,
                to = version,
                "plugin upgraded the stored data"
            );
        }
        self.storage
            .lock()
            .expect("storage lock")
            .set_meta(DATA_OWNER_VERSION, &version)
    }
}

/// The writes that remove a timer.
fn timer_removal(key: &str) -> Writes {
    let mut writes = Writes::default();
    writes.timers.insert(key.to_string(), None);
    writes
}

fn classify(error: wasmtime::Error, budget: Duration) -> Fault {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            Fault::OverBudget(format!("time budget of {} ms exceeded", budget.as_millis()))
        }
        Some(trap) => Fault::Trap(trap.to_string()),
        None => Fault::Trap(format!("{error:#}")),
    }
}
