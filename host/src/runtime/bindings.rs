//! The WIT world seen from the host: generated bindings, and the imports implemented over one
//! call's [`Transaction`] and the store and extensions lent to the call (see [`crate::lending`]).

use minidom::Element;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::extensions::{Call, Extensions};
use crate::lending::Place;
use crate::outbound::Outbound;
use crate::storage::{
    ArchiveEntry, ArchiveFilter, ArchivePosition, ArchiveQuery, ArchiveWriteError, Storage,
    StorageError, Tier as StoreTier, Transaction,
};
use crate::wasm::MemoryCap;

pub use crate::wasm::plugin_world::{exports, muc, MucPlugin, MucPluginPre};

use muc::plugin::archive;
use muc::plugin::logging::Level;
use muc::plugin::routing::RouteError;
use muc::plugin::storage::{Entry, StorageError as WitStorageError, Tier};

/// The data of one plugin instance's wasmtime store.
pub struct CallContext {
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    /// The store, lent for the duration of each call by its owner.
    pub storage: Place<Storage>,
    /// The room extensions, lent with the store (vacant when the host runs none).
    pub extensions: Place<Extensions>,
    /// An import reached for the store while none was lent (the plugin's own start code, run
    /// while a prepared instance is made off the core thread): it was answered as if nothing
    /// were stored, and the instance must not be used.
    pub store_missed: bool,
    /// The effects of the call in progress.
    pub txn: Transaction,
    /// The MUC domain: every stanza the plugin sends must come from it.
    service: String,
    /// Wall time, fixed for the duration of one call.
    pub now_ms: u64,
    plugin_name: String,
    /// What `settings.get` answers.
    named_settings: Vec<(String, String)>,
}

impl CallContext {
    pub fn new(
        service: String,
        plugin_name: String,
        memory_cap: usize,
        named_settings: Vec<(String, String)>,
    ) -> CallContext {
        CallContext {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            memory: MemoryCap::new(memory_cap),
            storage: Place::vacant(),
            extensions: Place::vacant(),
            store_missed: false,
            txn: Transaction::default(),
            service,
            now_ms: 0,
            plugin_name,
            named_settings,
        }
    }

    /// The name the plugin's log lines carry, known once it has described itself.
    pub fn set_plugin_name(&mut self, name: &str) {
        self.plugin_name = name.to_string();
    }

    /// The lent store and the call's transaction; none outside a call (see `store_missed`).
    fn lent(&mut self) -> Option<(&mut Storage, &mut Transaction)> {
        match self.storage.get_mut() {
            Some(storage) => Some((storage, &mut self.txn)),
            None => {
                self.store_missed = true;
                None
            }
        }
    }

    /// Parses and checks one outbound stanza: well-formed, and speaking only for the service.
    fn outbound(&self, xml: &str) -> Result<Element, RouteError> {
        let stanza: Element = xml
            .parse()
            .map_err(|e| RouteError::Malformed(format!("not XML: {e}")))?;
        if !matches!(stanza.name(), "message" | "presence" | "iq") || stanza.ns() != "jabber:client"
        {
            return Err(RouteError::Malformed(format!(
                "<{}/> in {} is not a jabber:client stanza",
                stanza.name(),
                stanza.ns()
            )));
        }
        let from = stanza.attr("from").unwrap_or_default();
        let from_domain = jid::Jid::new(from)
            .map(|jid| jid.domain().to_string())
            .map_err(|_| RouteError::NotPermitted(format!("from '{from}' is not a JID")))?;
        if from_domain != self.service {
            return Err(RouteError::NotPermitted(format!(
                "from '{from}' is outside {}",
                self.service
            )));
        }
        Ok(stanza)
    }
}

/// Why an archive import failed outside a call.
const NO_STORE: &str = "no store outside a call";

fn tier(tier: Tier) -> StoreTier {
    match tier {
        Tier::Durable => StoreTier::Durable,
        Tier::Volatile => StoreTier::Volatile,
    }
}

impl WasiView for CallContext {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl muc::plugin::types::Host for CallContext {}

impl muc::plugin::storage::Host for CallContext {
    fn get(&mut self, t: Tier, key: String) -> Option<Vec<u8>> {
        let (storage, txn) = self.lent()?;
        txn.get(storage, tier(t), &key)
    }

    fn put(&mut self, t: Tier, key: String, value: Vec<u8>) -> Result<(), WitStorageError> {
        let outcome = self.txn.put(tier(t), key, value);
        if let Err(error) = &outcome {
            self.txn.refused.get_or_insert_with(|| error.clone());
        }
        outcome.map_err(wit_storage_error)
    }

    fn delete(&mut self, t: Tier, key: String) {
        self.txn.delete(tier(t), key)
    }

    fn scan(
        &mut self,
        t: Tier,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Vec<Entry> {
        let Some((storage, txn)) = self.lent() else {
            return Vec::new();
        };
        txn.scan(
            storage,
            tier(t),
            &prefix,
            start_after.as_deref(),
            limit as usize,
        )
        .into_iter()
        .map(|(key, value)| Entry { key, value })
        .collect()
    }

    fn delete_prefix(&mut self, t: Tier, prefix: String) -> u32 {
        let Some((storage, txn)) = self.lent() else {
            return 0;
        };
        txn.delete_prefix(storage, tier(t), &prefix)
    }
}

fn wit_storage_error(error: StorageError) -> WitStorageError {
    match error {
        StorageError::TooLarge(why) => WitStorageError::TooLarge(why),
        StorageError::QuotaExceeded(why) => WitStorageError::QuotaExceeded(why),
    }
}

fn wit_archive_write_error(error: ArchiveWriteError) -> archive::WriteError {
    match error {
        ArchiveWriteError::Refused(error) => archive::WriteError::Storage(wit_storage_error(error)),
        ArchiveWriteError::DuplicateId(id) => archive::WriteError::DuplicateId(id),
    }
}

/// The archive, written inside the call's savepoint (see [`Transaction::archive_append`]).
impl archive::Host for CallContext {
    fn append(&mut self, room: String, entry: archive::Entry) -> Result<(), archive::WriteError> {
        let entry = ArchiveEntry {
            id: entry.id,
            at_ms: entry.at,
            sender: entry.sender,
            occupant_id: entry.occupant_id,
            real_jid: entry.real_jid,
            stanza: entry.stanza,
        };
        let Some((storage, txn)) = self.lent() else {
            return Err(archive::WriteError::Storage(
                WitStorageError::QuotaExceeded(NO_STORE.into()),
            ));
        };
        txn.archive_append(storage, &room, &entry)
            .map_err(wit_archive_write_error)
    }

    fn query(
        &mut self,
        room: String,
        query: archive::PageRequest,
    ) -> Result<archive::Page, archive::QueryError> {
        let filter = query.filter;
        let query = ArchiveQuery {
            filter: ArchiveFilter {
                start_ms: filter.start,
                end_ms: filter.end,
                with: filter.with,
                after_id: filter.after_id,
                before_id: filter.before_id,
                ids: filter.ids,
            },
            position: match query.position {
                archive::Position::Oldest => ArchivePosition::Oldest,
                archive::Position::Newest => ArchivePosition::Newest,
                archive::Position::After(id) => ArchivePosition::After(id),
                archive::Position::Before(id) => ArchivePosition::Before(id),
            },
            limit: query.limit,
        };
        let Some((storage, txn)) = self.lent() else {
            return Err(archive::QueryError::ItemNotFound(NO_STORE.into()));
        };
        let page = txn
            .archive_query(storage, &room, &query)
            .map_err(archive::QueryError::ItemNotFound)?;
        Ok(archive::Page {
            entries: page
                .entries
                .into_iter()
                .map(|entry| archive::Entry {
                    id: entry.id,
                    at: entry.at_ms,
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

    fn replace(
        &mut self,
        room: String,
        id: String,
        stanza: String,
    ) -> Result<bool, archive::WriteError> {
        let Some((storage, txn)) = self.lent() else {
            return Ok(false);
        };
        txn.archive_replace(storage, &room, &id, &stanza)
            .map_err(wit_archive_write_error)
    }

    fn trim(&mut self, room: String, keep: u32) {
        if let Some((storage, txn)) = self.lent() {
            txn.archive_trim(storage, &room, keep)
        }
    }

    fn delete(&mut self, room: String) {
        if let Some((storage, txn)) = self.lent() {
            txn.archive_delete(storage, &room)
        }
    }
}

impl muc::plugin::routing::Host for CallContext {
    fn send(&mut self, stanza: String) -> Result<(), RouteError> {
        let stanza = self.outbound(&stanza)?;
        if stanza
            .attr("to")
            .is_none_or(|to| jid::Jid::new(to).is_err())
        {
            return Err(RouteError::Malformed(
                "a stanza without a valid 'to'".into(),
            ));
        }
        self.txn.outbound.push(stanza.into());
        Ok(())
    }

    fn broadcast(&mut self, stanza: String, recipients: Vec<String>) -> Result<(), RouteError> {
        let stanza = self.outbound(&stanza)?;
        let recipients = recipients
            .into_iter()
            .map(|to| {
                jid::Jid::new(&to)
                    .map_err(|_| RouteError::Malformed(format!("recipient '{to}' is not a JID")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.txn
            .outbound
            .extend(Outbound::copies(stanza, recipients));
        Ok(())
    }

    fn broadcast_to_keys(
        &mut self,
        stanza: String,
        t: Tier,
        prefix: String,
    ) -> Result<u32, RouteError> {
        let recipients: Vec<String> = match self.lent() {
            Some((storage, txn)) => txn.keys(storage, tier(t), &prefix),
            None => Vec::new(),
        }
        .into_iter()
        .map(|key| key[prefix.len()..].to_string())
        .collect();
        let count = recipients.len() as u32;
        muc::plugin::routing::Host::broadcast(self, stanza, recipients)?;
        Ok(count)
    }
}

impl muc::plugin::timers::Host for CallContext {
    fn set(&mut self, key: String, at: u64) {
        self.txn.set_timer(key, at)
    }

    fn cancel(&mut self, key: String) {
        self.txn.cancel_timer(key)
    }
}

impl muc::plugin::clock::Host for CallContext {
    fn now(&mut self) -> u64 {
        self.now_ms
    }
}

impl muc::plugin::logging::Host for CallContext {
    fn log(&mut self, level: Level, message: String) {
        let plugin = self.plugin_name.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl CallContext {
    /// Runs `operation` on the host's extensions inside this call, or gives `none` when the
    /// host runs no extensions.
    fn with_extensions<R>(
        &mut self,
        none: R,
        operation: impl FnOnce(&mut Extensions, &mut Call) -> R,
    ) -> R {
        // Both are lent for a call, or neither.
        let Some(extensions) = self.extensions.get_mut() else {
            return none;
        };
        match Call::new(&mut self.storage, &mut self.txn, self.now_ms) {
            Some(mut call) => operation(extensions, &mut call),
            None => none,
        }
    }
}

/// The hooks, answered by the host's [`crate::extensions::Extensions`] inside this call.
impl muc::plugin::extensions::Host for CallContext {
    fn active(&mut self, room: String) -> bool {
        self.with_extensions(false, |extensions, call| extensions.active(call, &room))
    }

    fn message_hooks(&mut self, room: String) -> muc::plugin::extensions::MessageHooksNeed {
        let none = muc::plugin::extensions::MessageHooksNeed::None;
        self.with_extensions(none, |extensions, call| {
            extensions.message_hooks(call, &room)
        })
    }

    fn hook(
        &mut self,
        room: muc::plugin::extensions::Room,
        event: muc::plugin::extensions::Event,
    ) -> muc::plugin::extensions::Outcome {
        let unchanged = muc::plugin::extensions::Outcome {
            verdict: muc::plugin::extensions::Verdict::Pass,
            said: Vec::new(),
            next_tick: muc::plugin::extensions::TickRequest::Keep,
        };
        self.with_extensions(unchanged, |extensions, call| {
            extensions.hook(call, room, event)
        })
    }

    fn form_fields(&mut self, room: String) -> Vec<muc::plugin::extensions::FormField> {
        self.with_extensions(Vec::new(), |extensions, call| {
            extensions.form_fields(call, &room)
        })
    }

    fn configure(
        &mut self,
        room: muc::plugin::extensions::Room,
        submitted: Vec<muc::plugin::extensions::SubmittedField>,
    ) -> Result<muc::plugin::extensions::Configured, String> {
        let unchanged = Ok(muc::plugin::extensions::Configured {
            changed: false,
            next_tick: muc::plugin::extensions::TickRequest::Keep,
        });
        self.with_extensions(unchanged, |extensions, call| {
            extensions.configure(call, room, submitted)
        })
    }

    fn forget(&mut self, room: String) {
        self.with_extensions((), |extensions, call| extensions.forget(call, &room))
    }
}

impl muc::plugin::settings::Host for CallContext {
    fn get(&mut self, name: String) -> Option<String> {
        self.named_settings
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| value.clone())
    }
}

impl muc::plugin::ids::Host for CallContext {
    fn unique_id(&mut self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}
