//! The MUC logic linked natively into the host, behind the same imports the component gets:
//! only for measuring what WebAssembly costs (`--features native-plugin`: the `wasm_cost`
//! benchmark, and `serve --native-plugin` in `bench/duel`). It has no sandbox, no budget and no
//! memory cap, and it refuses swaps and room extensions; serve nobody with it.

use std::sync::Arc;

use minidom::Element;
use muc_plugin::host::{
    ArchiveEntry, ArchiveFilter, ArchivePage, ArchivePosition, ArchiveQuery, ArchiveQueryError,
    ArchiveWriteError, Envelope, Fault as PluginFault, Host, Level, StanzaKind, Tier,
};

use super::bindings::muc::plugin::{archive, clock, ids, logging, routing, storage, timers};
use super::{
    wit_stanza, CallContext, CompiledPlugin, Fault, Inbound, MucBackend, PluginInfo, Prepared,
    Settings, Stats, Status, SwapReport,
};
use crate::clock::Clock;
use crate::extensions::Extensions;
use crate::lending::Place;
use crate::outbound::Outbound;
use crate::storage::{Storage, Transaction};

pub struct NativeRuntime {
    muc: muc_plugin::Muc,
    started_ms: u64,
    context: CallContext,
    /// Lent to `context` for each call, as to a component's instance.
    storage: Place<Storage>,
    settings: Settings,
    clock: Arc<dyn Clock>,
}

impl NativeRuntime {
    pub fn new(storage: Storage, settings: Settings, clock: Arc<dyn Clock>) -> NativeRuntime {
        NativeRuntime {
            muc: muc_plugin::Muc::new(muc_plugin::Settings {
                service: settings.service.clone(),
                admins: settings.admins.clone(),
                max_rooms_per_user: settings.max_rooms_per_user,
                guest_domain: settings.guest_domain.clone(),
                guest_rooms: match settings.guest_rooms {
                    super::GuestRooms::Public => muc_plugin::GuestRooms::Public,
                    super::GuestRooms::None => muc_plugin::GuestRooms::Nowhere,
                },
            }),
            // The native build measures the MUC logic alone: no room extensions are lent to it.
            context: CallContext::new(
                settings.service.clone(),
                "muc-native".into(),
                0,
                settings.named(),
            ),
            started_ms: clock.now_ms(),
            storage: Place::holding(storage),
            settings,
            clock,
        }
    }

    /// One transaction, as for the component: the call's effects are kept only if it succeeds.
    fn call(
        &mut self,
        run: impl FnOnce(&muc_plugin::Muc, &mut dyn Host) -> Result<(), PluginFault>,
    ) -> Result<Vec<Outbound>, Fault> {
        self.context.txn = Transaction::new(self.settings.limits.quota);
        self.context.now_ms = self.clock.now_ms();
        let muc = &self.muc;
        let outcome = self
            .storage
            .lend(&mut self.context, lent_storage, |context| {
                run(muc, &mut Imports(context))
            });
        let txn = std::mem::take(&mut self.context.txn);
        let storage = self.storage.held_mut();
        let failed = match outcome {
            Ok(()) => txn.archive_failure.map(Fault::Failed),
            Err(PluginFault(why)) => Some(Fault::of_failed_call(why, txn.refused)),
        };
        if let Some(fault) = failed {
            storage.abandon_call();
            return Err(fault);
        }
        let stored = storage.apply(txn.writes);
        stored.map_err(|error| Fault::Failed(format!("{error:#}")))?;
        Ok(txn.outbound)
    }
}

impl MucBackend for NativeRuntime {
    fn storage(&self) -> &Storage {
        self.storage.held()
    }

    fn storage_mut(&mut self) -> &mut Storage {
        self.storage.held_mut()
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn handle_stanza(&mut self, inbound: Inbound) -> Result<Vec<Outbound>, Fault> {
        let stanza = wit_stanza(&inbound);
        let envelope = Envelope {
            kind: match inbound.stanza.name() {
                "message" => StanzaKind::Message,
                "presence" => StanzaKind::Presence,
                _ => StanzaKind::Iq,
            },
            type_: stanza.envelope.type_,
            from: stanza.envelope.from,
            to: stanza.envelope.to,
            id: stanza.envelope.id,
        };
        self.call(|muc, host| muc.handle_stanza(host, &envelope, &stanza.xml))
    }

    fn run_due_timers(&mut self) -> Vec<(String, Result<Vec<Outbound>, Fault>)> {
        let due = self.storage.held_mut().due_timers(self.clock.now_ms());
        due.into_iter()
            .map(|key| {
                let outcome = self.call(|muc, host| {
                    host.cancel_timer(&key);
                    muc.on_timer(host, &key)
                });
                (key, outcome)
            })
            .collect()
    }

    fn on_shutdown(&mut self) -> Result<Vec<Outbound>, Fault> {
        self.call(|muc, host| muc.on_shutdown(host))
    }

    fn status(&self) -> Status {
        Status {
            info: PluginInfo {
                name: muc_plugin::service::NAME.into(),
                version: muc_plugin::service::VERSION.into(),
                contract: muc_plugin::service::CONTRACT.into(),
                hash: "linked in".into(),
            },
            loaded_since_ms: self.started_ms,
            // Calls and faults are counted for the component only.
            stats: Stats::default(),
            previous: None,
            cluster: None,
        }
    }

    /// None: the linked-in logic runs no room extensions.
    fn extensions(&self) -> Option<&Extensions> {
        None
    }

    fn extensions_and_store(&mut self) -> Option<(&mut Extensions, &mut Place<Storage>)> {
        None
    }

    fn swap(&mut self, _: Prepared) -> Result<(SwapReport, Vec<Outbound>), String> {
        Err("the MUC logic is linked in (serve --native-plugin, for measurement): it cannot be swapped".into())
    }

    fn previous(&self) -> Option<CompiledPlugin> {
        None
    }
}

fn lent_storage(context: &mut CallContext) -> &mut Place<Storage> {
    &mut context.storage
}

/// The plugin library's `Host`, served by the very functions that serve the component's imports.
struct Imports<'a>(&'a mut CallContext);

fn tier(tier: Tier) -> storage::Tier {
    match tier {
        Tier::Durable => storage::Tier::Durable,
        Tier::Volatile => storage::Tier::Volatile,
    }
}

impl Host for Imports<'_> {
    fn get(&mut self, t: Tier, key: &str) -> Option<Vec<u8>> {
        storage::Host::get(self.0, tier(t), key.to_string())
    }

    fn put(&mut self, t: Tier, key: &str, value: Vec<u8>) -> Result<(), PluginFault> {
        storage::Host::put(self.0, tier(t), key.to_string(), value)
            .map_err(|e| PluginFault(format!("{e:?}")))
    }

    fn delete(&mut self, t: Tier, key: &str) {
        storage::Host::delete(self.0, tier(t), key.to_string())
    }

    fn scan(
        &mut self,
        t: Tier,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Vec<(String, Vec<u8>)> {
        storage::Host::scan(
            self.0,
            tier(t),
            prefix.to_string(),
            start_after.map(str::to_string),
            limit,
        )
        .into_iter()
        .map(|entry| (entry.key, entry.value))
        .collect()
    }

    fn delete_prefix(&mut self, t: Tier, prefix: &str) -> u32 {
        storage::Host::delete_prefix(self.0, tier(t), prefix.to_string())
    }

    // Stanzas cross as text, exactly as from the component, so the comparison stays fair.
    fn send(&mut self, stanza: Element) -> Result<(), PluginFault> {
        routing::Host::send(self.0, String::from(&stanza))
            .map_err(|e| PluginFault(format!("{e:?}")))
    }

    fn broadcast(&mut self, stanza: Element, recipients: &[String]) -> Result<(), PluginFault> {
        routing::Host::broadcast(self.0, String::from(&stanza), recipients.to_vec())
            .map_err(|e| PluginFault(format!("{e:?}")))
    }

    fn broadcast_to_keys(
        &mut self,
        stanza: &str,
        t: Tier,
        prefix: &str,
    ) -> Result<(), PluginFault> {
        routing::Host::broadcast_to_keys(self.0, stanza.to_string(), tier(t), prefix.to_string())
            .map(|_| ())
            .map_err(|e| PluginFault(format!("{e:?}")))
    }

    fn set_timer(&mut self, key: &str, at_ms: u64) {
        timers::Host::set(self.0, key.to_string(), at_ms)
    }

    fn cancel_timer(&mut self, key: &str) {
        timers::Host::cancel(self.0, key.to_string())
    }

    fn now_ms(&mut self) -> u64 {
        clock::Host::now(self.0)
    }

    fn unique_id(&mut self) -> String {
        ids::Host::unique_id(self.0)
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => logging::Level::Trace,
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
            Level::Error => logging::Level::Error,
        };
        logging::Host::log(self.0, level, message.to_string())
    }

    fn archive_append(&mut self, room: &str, entry: ArchiveEntry) -> Result<(), ArchiveWriteError> {
        archive::Host::append(self.0, room.to_string(), wit_entry(entry))
            .map_err(archive_write_error)
    }

    fn archive_query(
        &mut self,
        room: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, ArchiveQueryError> {
        let ArchiveFilter {
            start_ms,
            end_ms,
            with,
            after_id,
            before_id,
            ids,
        } = query.filter.clone();
        let query = archive::PageRequest {
            filter: archive::Filter {
                start: start_ms,
                end: end_ms,
                with,
                after_id,
                before_id,
                ids,
            },
            position: match &query.position {
                ArchivePosition::Oldest => archive::Position::Oldest,
                ArchivePosition::Newest => archive::Position::Newest,
                ArchivePosition::After(id) => archive::Position::After(id.clone()),
                ArchivePosition::Before(id) => archive::Position::Before(id.clone()),
            },
            limit: query.limit,
        };
        let page =
            archive::Host::query(self.0, room.to_string(), query).map_err(|error| match error {
                archive::QueryError::ItemNotFound(id) => ArchiveQueryError::ItemNotFound(id),
            })?;
        Ok(ArchivePage {
            entries: page
                .entries
                .into_iter()
                .map(|entry| ArchiveEntry {
                    id: entry.id,
                    at_ms: entry.at,
                    sender: entry.sender,
                    occupant_id: entry.occupant_id,
                    real_jid: entry.real_jid,
                    stanza: entry.stanza,
                })
                .collect(),
            complete: page.complete,
            count: page.count,
            index: page.index,
        })
    }

    fn archive_replace(
        &mut self,
        room: &str,
        id: &str,
        stanza: &str,
    ) -> Result<bool, ArchiveWriteError> {
        archive::Host::replace(self.0, room.to_string(), id.to_string(), stanza.to_string())
            .map_err(archive_write_error)
    }

    fn archive_trim(&mut self, room: &str, keep: u32) {
        archive::Host::trim(self.0, room.to_string(), keep)
    }

    fn archive_delete(&mut self, room: &str) {
        archive::Host::delete(self.0, room.to_string())
    }
}

fn wit_entry(entry: ArchiveEntry) -> archive::Entry {
    archive::Entry {
        id: entry.id,
        at: entry.at_ms,
        sender: entry.sender,
        occupant_id: entry.occupant_id,
        real_jid: entry.real_jid,
        stanza: entry.stanza,
    }
}

fn archive_write_error(error: archive::WriteError) -> ArchiveWriteError {
    match error {
        archive::WriteError::Storage(refused) => ArchiveWriteError::Refused(format!("{refused:?}")),
        archive::WriteError::DuplicateId(id) => ArchiveWriteError::DuplicateId(id),
    }
}
