//! Running a MUC plugin: one instance at a time, each call one transaction, faults contained.
//!
//! A call's storage writes, timer changes and stanzas are buffered in the instance's
//! [`CallContext`]; they are applied to the [`Storage`] (durable writes on disk first) and the
//! stanzas returned for delivery only when the call returns `ok`. A trap, a blown time budget or
//! memory cap, or an `err` discards the buffer and the instance; the next one is made fresh from
//! the pre-linked component.
//!
//! The runtime owns the store and the room extensions, on the core thread, and lends them to the
//! instance for each call (see [`crate::lending`]); nothing else holds them. A plugin swapped in
//! is compiled and instantiated elsewhere ([`Preparer`]), without them; its `init` and
//! `describe` run here, when it takes over.

mod bindings;
mod engine;
#[cfg(feature = "native-plugin")]
pub mod native;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use minidom::Element;
use wasmtime::Store;

use crate::clock::Clock;
use crate::extensions::Extensions;
use crate::lending::Place;
use crate::outbound::Outbound;
use crate::storage::lease::Member;
use crate::storage::{Quota, Storage, StorageError, Transaction, Writes, DATA_OWNER_VERSION};
use bindings::exports::muc::plugin::guest;
use bindings::muc::plugin::types;
pub use bindings::{CallContext, MucPlugin};
pub use engine::{host_contract, CompiledPlugin, PluginEngine};

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

/// Rooms one user may have created that still exist, unless the operator says otherwise (as
/// ejabberd's `max_user_conferences`).
pub const DEFAULT_MAX_ROOMS_PER_USER: u32 = 100;

#[derive(Clone)]
pub struct Settings {
    /// The MUC domain the plugin serves.
    pub service: String,
    /// Service administrators' bare JIDs.
    pub admins: Vec<String>,
    pub limits: Limits,
    /// Rooms one user who is not an administrator may have created that still exist; 0: no
    /// limit. The plugin reads it as the setting `max-rooms-per-user` (contract 1.4).
    pub max_rooms_per_user: u32,
    /// Where guests (SASL ANONYMOUS) log in; None: no guests. The setting `guest-domain`.
    pub guest_domain: Option<String>,
    /// Which rooms guests may enter. The setting `guest-rooms`.
    pub guest_rooms: GuestRooms,
}

/// Which rooms guests may enter (`--guest-rooms`); members-only rooms refuse them whatever this
/// says, a guest being nobody's member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestRooms {
    /// Public rooms only (`muc#roomconfig_publicroom`).
    #[default]
    Public,
    /// None.
    None,
}

impl GuestRooms {
    /// The setting's value as the plugin reads it.
    pub fn name(self) -> &'static str {
        match self {
            GuestRooms::Public => "public",
            GuestRooms::None => "none",
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            service: String::new(),
            admins: Vec::new(),
            limits: Limits::default(),
            max_rooms_per_user: DEFAULT_MAX_ROOMS_PER_USER,
            guest_domain: None,
            guest_rooms: GuestRooms::default(),
        }
    }
}

impl Settings {
    /// The named settings the plugin may ask for (`muc:plugin/settings`), as text; without
    /// guests, no `guest-domain`.
    pub fn named(&self) -> Vec<(String, String)> {
        let mut named = vec![
            (
                "max-rooms-per-user".to_string(),
                self.max_rooms_per_user.to_string(),
            ),
            (
                "guest-rooms".to_string(),
                self.guest_rooms.name().to_string(),
            ),
        ];
        if let Some(guest_domain) = &self.guest_domain {
            named.push(("guest-domain".to_string(), guest_domain.clone()));
        }
        named
    }
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
    /// The plugin gave up after the store refused one of its writes (a key or a value too
    /// large, too much written in one call): a limit the sender's input reached, not a bug.
    StoreLimit(StorageError),
}

impl Fault {
    /// How a call that returned `reason` failed, given the first write the store refused it:
    /// on that refusal when its reason carries the store's words, not when the plugin handled
    /// the refusal and then failed on something else.
    pub fn of_failed_call(reason: String, refused: Option<StorageError>) -> Fault {
        match refused {
            Some(refused) if reason.contains(refused.why()) => Fault::StoreLimit(refused),
            _ => Fault::Failed(reason),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Trap(why) => write!(f, "trap: {why}"),
            Fault::OverBudget(why) => write!(f, "over budget: {why}"),
            Fault::Failed(why) => write!(f, "failed: {why}"),
            Fault::StoreLimit(StorageError::TooLarge(why) | StorageError::QuotaExceeded(why)) => {
                write!(f, "store limit: {why}")
            }
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
    fn handle_stanza(&mut self, inbound: Inbound) -> Result<Vec<Outbound>, Fault>;
    /// Runs every timer due by now, earliest first; returns what each one sent.
    fn run_due_timers(&mut self) -> Vec<(String, Result<Vec<Outbound>, Fault>)>;
    /// The service is stopping.
    fn on_shutdown(&mut self) -> Result<Vec<Outbound>, Fault>;
    /// The store the logic's calls commit to, between two calls.
    fn storage(&self) -> &Storage;
    fn storage_mut(&mut self) -> &mut Storage;
    /// The time its calls see, in ms since the Unix epoch (virtual in the test host).
    fn now_ms(&self) -> u64;
    /// What `ctl status` shows.
    fn status(&self) -> Status;
    /// The room extensions the logic's hooks run, if any.
    fn extensions(&self) -> Option<&Extensions>;
    /// The room extensions, if any, with the store they keep their catalog in, to change them
    /// between two calls.
    fn extensions_and_store(&mut self) -> Option<(&mut Extensions, &mut Place<Storage>)>;
    /// Hands the service to `prepared` between two calls (see [`PluginRuntime::swap`]); on
    /// success, what the new plugin's upgrade sent. Nothing changes on an error.
    fn swap(&mut self, prepared: Prepared) -> Result<(SwapReport, Vec<Outbound>), String>;
    /// The plugin the current one replaced, for a rollback.
    fn previous(&self) -> Option<CompiledPlugin>;
}

impl MucBackend for PluginRuntime {
    fn handle_stanza(&mut self, inbound: Inbound) -> Result<Vec<Outbound>, Fault> {
        PluginRuntime::handle_stanza(self, inbound)
    }

    fn run_due_timers(&mut self) -> Vec<(String, Result<Vec<Outbound>, Fault>)> {
        PluginRuntime::run_due_timers(self)
    }

    fn on_shutdown(&mut self) -> Result<Vec<Outbound>, Fault> {
        PluginRuntime::on_shutdown(self)
    }

    fn storage(&self) -> &Storage {
        PluginRuntime::storage(self)
    }

    fn storage_mut(&mut self) -> &mut Storage {
        PluginRuntime::storage_mut(self)
    }

    fn now_ms(&self) -> u64 {
        PluginRuntime::now_ms(self)
    }

    fn status(&self) -> Status {
        PluginRuntime::status(self)
    }

    fn extensions(&self) -> Option<&Extensions> {
        PluginRuntime::extensions(self)
    }

    fn extensions_and_store(&mut self) -> Option<(&mut Extensions, &mut Place<Storage>)> {
        let extensions = self.extensions.get_mut()?;
        Some((extensions, &mut self.storage))
    }

    fn swap(&mut self, prepared: Prepared) -> Result<(SwapReport, Vec<Outbound>), String> {
        PluginRuntime::swap(self, prepared)
    }

    fn previous(&self) -> Option<CompiledPlugin> {
        PluginRuntime::previous(self)
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
    /// Lent to the instance for each call.
    storage: Place<Storage>,
    /// The room extensions the plugin's hooks run (vacant: every room has none), lent with the
    /// store.
    extensions: Place<Extensions>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    stats: Stats,
    /// When this plugin took over (ms since the Unix epoch).
    loaded_since_ms: u64,
    /// The plugin it replaced, kept compiled for a rollback.
    previous: Option<(CompiledPlugin, PluginInfo)>,
}

/// A plugin compiled, checked and instantiated off the core thread, ready to take over in
/// [`PluginRuntime::swap`] (which runs its `init` and `describe`, where the store is).
pub struct Prepared {
    plugin: CompiledPlugin,
    instance: Instance,
}

impl Prepared {
    /// SHA-256 of the component file.
    pub fn hash(&self) -> &str {
        &self.plugin.hash
    }
}

/// Makes [`Prepared`] plugins for a runtime from any thread: what instantiation needs, and
/// never the store.
#[derive(Clone)]
pub struct Preparer {
    settings: Settings,
    clock: Arc<dyn Clock>,
}

impl Preparer {
    /// Instantiates `plugin` (the costly part) while the current plugin keeps serving. A failure
    /// here refuses the plugin.
    pub fn prepare(&self, plugin: CompiledPlugin) -> Result<Prepared> {
        let instance =
            instantiate(&plugin, &self.settings, self.clock.as_ref(), "").map_err(|error| {
                anyhow::anyhow!("instantiating: {}", describe_error(error, &self.settings))
            })?;
        Ok(Prepared { plugin, instance })
    }
}

/// What a swap did, for the log, the metrics and whoever asked.
#[derive(Clone, Debug)]
pub struct SwapReport {
    pub from: PluginInfo,
    pub to: PluginInfo,
    /// Whether `upgrade` ran (the version changed).
    pub upgraded: bool,
}

/// What `ctl status` shows.
#[derive(Clone, Debug)]
pub struct Status {
    pub info: PluginInfo,
    pub loaded_since_ms: u64,
    pub stats: Stats,
    pub previous: Option<PluginInfo>,
    /// The instances sharing the store, when it is shared (filled by the core), or why they
    /// could not be read.
    pub cluster: Option<Result<Vec<Member>, String>>,
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
    /// `extensions`: the room extensions the plugin's hooks run (none: every room has none).
    pub fn start(
        plugin: CompiledPlugin,
        storage: Storage,
        extensions: Option<Extensions>,
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
            storage: Place::holding(storage),
            extensions: extensions.map_or_else(Place::vacant, Place::holding),
            settings,
            loaded_since_ms: clock.now_ms(),
            clock,
            stats: Stats::default(),
            previous: None,
        };
        let mut instance = runtime.instantiate()?;
        let described = runtime
            .run_lent(&mut instance, |plugin, store| {
                plugin.muc_plugin_guest().call_describe(store)
            })
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

    pub fn status(&self) -> Status {
        Status {
            info: self.info.clone(),
            loaded_since_ms: self.loaded_since_ms,
            stats: self.stats.clone(),
            previous: self.previous.as_ref().map(|(_, info)| info.clone()),
            cluster: None,
        }
    }

    pub fn preparer(&self) -> Preparer {
        Preparer {
            settings: self.settings.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The plugin this one replaced, compiled, for [`Preparer::prepare`] and a swap back.
    pub fn previous(&self) -> Option<CompiledPlugin> {
        self.previous.as_ref().map(|(plugin, _)| plugin.clone())
    }

    /// Hands the service to `prepared`, between two calls: the new instance runs `init` and
    /// `describe` (under the call budget: a failure refuses it), the old one is no longer fed,
    /// the new one migrates the data (`upgrade(previous version)`, once per version change, in
    /// one transaction) and takes over. If anything fails, the new plugin's writes are discarded
    /// and the old plugin goes on serving. The old plugin stays compiled for a rollback.
    pub fn swap(&mut self, prepared: Prepared) -> Result<(SwapReport, Vec<Outbound>), String> {
        let Prepared {
            plugin,
            mut instance,
        } = prepared;
        let refused =
            |why: String| format!("the new plugin failed to start, the old one serves on: {why}");
        self.initialise(&mut instance)
            .map_err(|error| refused(format!("init: {}", describe_error(error, &self.settings))))?;
        let described = self
            .run_lent(&mut instance, |plugin, store| {
                plugin.muc_plugin_guest().call_describe(store)
            })
            .map_err(|error| {
                refused(format!(
                    "describe: {}",
                    describe_error(error, &self.settings)
                ))
            })?;
        let info = PluginInfo {
            name: described.name,
            version: described.version,
            contract: plugin.contract.clone(),
            hash: plugin.hash.clone(),
        };
        instance.store.data_mut().set_plugin_name(&info.name);
        let upgrade_failed = |fault: Fault| {
            format!("the new plugin's upgrade failed, the old one serves on: {fault}")
        };
        let owner = self.storage.held_mut().data_owner().map_err(|error| {
            upgrade_failed(Fault::Failed(format!(
                "reading the data's owner: {error:#}"
            )))
        })?;
        let upgraded = owner.as_deref() != Some(info.version.as_str());
        let mut outbound = Vec::new();
        if upgraded {
            let from = owner.unwrap_or_else(|| "0.0.0".into());
            outbound = self
                .call_on(&mut instance, Writes::default(), None, |plugin, store| {
                    plugin.muc_plugin_guest().call_upgrade(store, &from)
                })
                .map_err(upgrade_failed)?;
            let recorded = self
                .storage
                .held_mut()
                .set_meta(DATA_OWNER_VERSION, &info.version);
            recorded.map_err(|error| {
                upgrade_failed(Fault::Failed(format!(
                    "recording the data's owner: {error:#}"
                )))
            })?;
        }
        let storage = self.storage.held_mut();
        if !upgraded && info.version != self.info.version {
            // Another instance ran the upgrade while this one served the old version.
            storage.forget_the_old_layout();
        }
        storage.serve_as(&info.version);
        let report = SwapReport {
            from: self.info.clone(),
            to: info.clone(),
            upgraded,
        };
        let old_plugin = std::mem::replace(&mut self.plugin, plugin);
        let old_info = std::mem::replace(&mut self.info, info);
        self.previous = Some((old_plugin, old_info));
        self.instance = Some(instance);
        self.stats = Stats::default();
        self.loaded_since_ms = self.clock.now_ms();
        Ok((report, outbound))
    }

    /// The store, between two calls.
    pub fn storage(&self) -> &Storage {
        self.storage.held()
    }

    pub fn storage_mut(&mut self) -> &mut Storage {
        self.storage.held_mut()
    }

    /// The room extensions the plugin's hooks run, if the host has any.
    pub fn extensions(&self) -> Option<&Extensions> {
        self.extensions.get()
    }

    pub fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        self.extensions.get_mut()
    }

    /// The store and the extensions, given back for the runtime's end (a restart in a test).
    pub fn into_parts(self) -> (Storage, Option<Extensions>) {
        let storage = self.storage.into_inner();
        (
            storage.expect("the store is back between calls"),
            self.extensions.into_inner(),
        )
    }

    /// The clock calls see.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Discards the current instance and makes a fresh one, as after a fault; the store, and so
    /// every room, is untouched.
    pub fn replace_instance(&mut self) -> Result<()> {
        self.instance = None;
        self.instance = Some(self.instantiate()?);
        Ok(())
    }

    /// Hands one stanza to the plugin; on success, the stanzas to deliver.
    pub fn handle_stanza(&mut self, inbound: Inbound) -> Result<Vec<Outbound>, Fault> {
        let stanza = wit_stanza(&inbound);
        // The room (or the service) the stanza is for: the timers the call sets are its.
        let room = inbound
            .to
            .parse::<jid::Jid>()
            .ok()
            .map(|to| to.to_bare().to_string());
        self.call_with(Writes::default(), room, |plugin, store| {
            plugin.muc_plugin_guest().call_handle_stanza(store, &stanza)
        })
    }

    pub fn on_shutdown(&mut self) -> Result<Vec<Outbound>, Fault> {
        self.call(|plugin, store| plugin.muc_plugin_guest().call_on_shutdown(store))
    }

    /// Runs every timer due by now, earliest first; returns what each one sent.
    pub fn run_due_timers(&mut self) -> Vec<(String, Result<Vec<Outbound>, Fault>)> {
        let now = self.clock.now_ms();
        let due: Vec<String> = {
            let storage = self.storage.held_mut();
            storage.adopt_orphaned_timers(now);
            let due = storage.due_timers(now);
            due.into_iter()
                .filter(|key| storage.may_fire(key, now))
                .collect()
        };
        due.into_iter()
            .map(|key| {
                // A timer fires once: its removal commits with the call it triggers, or alone
                // when that call fails, so a failing timer cannot fire forever.
                let outcome = self.on_timer_once(&key);
                (key, outcome)
            })
            .collect()
    }

    fn on_timer_once(&mut self, key: &str) -> Result<Vec<Outbound>, Fault> {
        let room = self.storage.held_mut().timer_room(key).map(str::to_string);
        let outcome = self.call_with(timer_removal(key), room, |plugin, store| {
            plugin.muc_plugin_guest().call_on_timer(store, key)
        });
        if outcome.is_err() {
            let removed = self.storage.held_mut().apply(timer_removal(key));
            if let Err(error) = removed {
                tracing::error!(key, %error, "could not remove a failed timer");
            }
        }
        outcome
    }

    fn call(
        &mut self,
        export: impl FnOnce(&MucPlugin, &mut Store<CallContext>) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<Vec<Outbound>, Fault> {
        self.call_with(Default::default(), None, export)
    }

    /// One transaction: `preset` writes, then the call's own, committed together or not at all.
    fn call_with(
        &mut self,
        preset: Writes,
        room: Option<String>,
        export: impl FnOnce(&MucPlugin, &mut Store<CallContext>) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<Vec<Outbound>, Fault> {
        self.stats.calls += 1;
        let mut instance = match self.instance.take() {
            Some(instance) => instance,
            None => match self.instantiate() {
                Ok(instance) => instance,
                Err(error) => return Err(self.fault(Fault::Trap(format!("{error:#}")))),
            },
        };
        match self.call_on(&mut instance, preset, room, export) {
            Ok(outbound) => {
                self.instance = Some(instance);
                Ok(outbound)
            }
            // The instance may be in any state: it is dropped, and its buffer with it.
            Err(fault) => Err(self.fault(fault)),
        }
    }

    /// One call on `instance`, as one transaction; on a fault nothing is kept and the caller
    /// must not use the instance again.
    fn call_on(
        &mut self,
        instance: &mut Instance,
        preset: Writes,
        room: Option<String>,
        export: impl FnOnce(&MucPlugin, &mut Store<CallContext>) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<Vec<Outbound>, Fault> {
        let mut txn = Transaction::new(self.settings.limits.quota);
        txn.writes = preset;
        // A call about no room in particular (init, upgrade, shutdown) is the service's.
        txn.room = room.or_else(|| Some(self.settings.service.clone()));
        begin(
            &mut instance.store,
            txn,
            self.clock.as_ref(),
            &self.settings,
        );
        let bindings = &instance.bindings;
        let result = lend(
            &mut self.storage,
            &mut self.extensions,
            &mut instance.store,
            |store| export(bindings, store),
        );
        let context = instance.store.data_mut();
        let txn = std::mem::take(&mut context.txn);
        let storage = self.storage.held_mut();
        let failed = match result {
            Ok(Ok(())) => txn.archive_failure.map(Fault::Failed),
            Ok(Err(reason)) => Some(Fault::of_failed_call(reason, txn.refused)),
            Err(error) if context.memory.hit => Some(Fault::OverBudget(format!("{error}"))),
            Err(error) => Some(classify(error, self.settings.limits.call_budget)),
        };
        if let Some(fault) = failed {
            storage.abandon_call();
            return Err(fault);
        }
        if let Err(error) = storage.apply(txn.writes) {
            return Err(Fault::Failed(format!(
                "storing the call's writes: {error:#}"
            )));
        }
        Ok(txn.outbound)
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

    /// A fresh instance of the current plugin, initialised.
    fn instantiate(&mut self) -> Result<Instance> {
        let mut instance = instantiate(
            &self.plugin,
            &self.settings,
            self.clock.as_ref(),
            &self.info.name,
        )?;
        self.initialise(&mut instance)?;
        self.stats.instances_created += 1;
        Ok(instance)
    }

    /// Runs `init` on a fresh instance: it may read but must not write or send. On a failure,
    /// what it archived is undone (it runs in the batch's database transaction).
    fn initialise(&mut self, instance: &mut Instance) -> Result<()> {
        let settings = guest::Settings {
            service: self.settings.service.clone(),
            admins: self.settings.admins.clone(),
        };
        let ran = self.run_lent(instance, |plugin, store| {
            plugin.muc_plugin_guest().call_init(store, &settings)
        });
        let outcome = match ran {
            Err(error) => Err(error.into()),
            Ok(Err(reason)) => Err(anyhow::anyhow!("init failed: {reason}")),
            Ok(Ok(())) if !instance.store.data().txn.is_empty() => Err(anyhow::anyhow!(
                "init wrote to storage or sent a stanza; it may only read"
            )),
            Ok(Ok(())) => Ok(()),
        };
        if outcome.is_err() {
            self.storage.held_mut().abandon_call();
        }
        outcome
    }

    /// Runs `export` on `instance` under the call budget, with the store and the extensions lent
    /// to it, outside any transaction (`init`, `describe`: what they write is never kept).
    fn run_lent<R>(
        &mut self,
        instance: &mut Instance,
        export: impl FnOnce(&MucPlugin, &mut Store<CallContext>) -> R,
    ) -> R {
        begin(
            &mut instance.store,
            Transaction::default(),
            self.clock.as_ref(),
            &self.settings,
        );
        let bindings = &instance.bindings;
        lend(
            &mut self.storage,
            &mut self.extensions,
            &mut instance.store,
            |store| export(bindings, store),
        )
    }

    /// Records this plugin as the owner of the data, running `upgrade` first when another
    /// version owned it.
    fn take_over_data(&mut self) -> Result<()> {
        let (owner, fresh) = {
            let storage = self.storage.held_mut();
            (storage.data_owner()?, storage.is_empty())
        };
        let version = self.info.version.clone();
        let previous = match owner {
            Some(owner) if owner == version => {
                self.storage.held_mut().serve_as(&version);
                return Ok(());
            }
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
        let storage = self.storage.held_mut();
        storage.set_meta(DATA_OWNER_VERSION, &version)?;
        storage.serve_as(&version);
        Ok(())
    }
}

/// Starts a call on `store`: its transaction, the time it sees, and its time budget.
fn begin(store: &mut Store<CallContext>, txn: Transaction, clock: &dyn Clock, settings: &Settings) {
    let context = store.data_mut();
    context.txn = txn;
    context.now_ms = clock.now_ms();
    context.memory.hit = false;
    store.set_epoch_deadline(crate::wasm::budget_ticks(settings.limits.call_budget));
}

/// A fresh instance of `plugin`, not yet initialised: the costly part, which needs no store (so
/// it may run on any thread).
fn instantiate(
    plugin: &CompiledPlugin,
    settings: &Settings,
    clock: &dyn Clock,
    name: &str,
) -> Result<Instance> {
    let context = CallContext::new(
        settings.service.clone(),
        name.to_string(),
        settings.limits.memory_bytes,
        settings.named(),
    );
    let mut store = Store::new(plugin.pre.engine(), context);
    store.limiter(|context| &mut context.memory);
    begin(&mut store, Transaction::default(), clock, settings);
    let bindings = plugin.pre.instantiate(&mut store)?;
    if store.data().store_missed {
        bail!("it reached for the store while being instantiated; only its calls may");
    }
    Ok(Instance { store, bindings })
}

/// Runs `run` on `store` with the store and the extensions lent to it, and takes them back
/// after, whatever it did (see [`crate::lending`]).
fn lend<R>(
    storage: &mut Place<Storage>,
    extensions: &mut Place<Extensions>,
    store: &mut Store<CallContext>,
    run: impl FnOnce(&mut Store<CallContext>) -> R,
) -> R {
    storage.lend(store, lent_storage, |store| {
        extensions.lend(store, lent_extensions, run)
    })
}

fn lent_storage(store: &mut Store<CallContext>) -> &mut Place<Storage> {
    &mut store.data_mut().storage
}

fn lent_extensions(store: &mut Store<CallContext>) -> &mut Place<Extensions> {
    &mut store.data_mut().extensions
}

/// An instantiation or describe error, saying which limit ended it.
fn describe_error(error: impl Into<anyhow::Error>, settings: &Settings) -> String {
    let error: anyhow::Error = error.into();
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "time budget of {} ms exceeded",
            settings.limits.call_budget.as_millis()
        ),
        _ => format!("{error:#}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_fails_on_a_store_limit_only_when_it_gave_up_on_the_refusal() {
        let refused = StorageError::TooLarge("value of 2000000 bytes, over 1048576".into());
        let gave_up = format!("TooLarge({:?})", refused.why());
        assert_eq!(
            Fault::of_failed_call(gave_up, Some(refused.clone())),
            Fault::StoreLimit(refused.clone())
        );
        assert_eq!(
            Fault::of_failed_call("an unrelated bug".into(), Some(refused)),
            Fault::Failed("an unrelated bug".into())
        );
        assert_eq!(
            Fault::of_failed_call("a bug".into(), None),
            Fault::Failed("a bug".into())
        );
    }
}
