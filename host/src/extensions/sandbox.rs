//! One room extension instance under the host's limits: the `room-extension` world's imports,
//! answered for one (extension, room) from inside the MUC call that runs its hook.
//!
//! Everything the extension may touch is in [`HookCall`]: its room as the plugin described it,
//! its owner's settings, its slice of the extensions tier, and a message allowance. WASI is
//! linked with an empty context: no files, no sockets, no environment.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::Store;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::call_clock::CallClock;
use super::occupant_ids::OccupantIds;
use super::stderr::StderrTail;
use super::text::{log_line, unfit_for_xml};
use crate::lending::Place;
use crate::storage::{Storage, Tier, Transaction};
use crate::wasm::MemoryCap;

wasmtime::component::bindgen!({
    path: "../wit/extension",
    world: "room-extension",
    // An import used outside a hook call (from `describe`) traps.
    imports: { default: trappable },
});

pub use exports::muc::extension::hooks::{JoinVerdict, Manifest, MessageVerdict};
pub use muc::extension::model::{
    Affiliation, Occupant, Role, Setting as DeclaredSetting, SettingKind,
};
pub use muc::extension::room::{RoomInfo, SayError};
use muc::extension::store::PutError;

/// Caps on one said body (the room's own message cap applies to people, this one to code).
pub const MAX_SAID_BYTES: usize = 4096;
/// The longest key an extension may store under.
const MAX_KEY_BYTES: usize = 1024;
/// WASI resources one instance may hold at once.
const MAX_HANDLES: usize = 1000;
/// Log lines one hook call may write, and their length (the rest is cut).
const MAX_LOG_LINES: usize = 20;
const MAX_LOG_BYTES: usize = 1024;

/// What one hook call may reach, and what it did.
pub struct HookCall {
    /// The MUC call's transaction, lent to the extension for the duration of its hook.
    pub txn: Transaction,
    /// `store/<room>/<extension>/`: the extension's keys in the extensions tier.
    pub prefix: String,
    pub extension: String,
    pub quota_bytes: usize,
    /// Bytes of its keys (without `prefix`) and values, counted on the first write of the call.
    pub used_bytes: Option<usize>,
    pub room: Arc<SeenRoom>,
    /// Whether its manifest declared `reads-occupants`.
    pub reads_occupants: bool,
    pub settings: BTreeMap<String, Vec<String>>,
    /// The nick the owner approved; `None`: the extension may not speak.
    pub nick: Option<String>,
    /// Messages it may still say in this call (what is left of its per-minute cap).
    pub say_allowance: usize,
    pub said: Vec<String>,
    pub logged: usize,
    /// Bytes written in this call, against the same quota as the storage: a call cannot fill
    /// the MUC call's transaction by rewriting one key.
    pub written_bytes: usize,
    /// The first rule the extension broke: the call counts as a fault whatever it returns.
    pub broke: Option<String>,
    /// The last `put` or `say` refused: the extension may handle it; if the call then traps,
    /// this is most likely why (a runtime raises the error it was not given a handler for).
    pub refused: Option<String>,
    pub now_ms: u64,
    /// `extension@room`, for log lines.
    pub tag: String,
}

/// The data of one extension instance's store.
pub struct ExtensionContext {
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    /// The end of what it wrote to stderr in its current call, for its faults.
    pub stderr: StderrTail,
    /// What WASI's wall clock reads: the hook call's instant.
    pub clock: CallClock,
    /// Set for the duration of a hook call.
    pub call: Option<HookCall>,
    /// The store, lent by the MUC call for the duration of a hook call (see
    /// [`crate::lending`]).
    pub storage: Place<Storage>,
}

impl ExtensionContext {
    pub fn new(memory_cap: usize) -> ExtensionContext {
        let mut table = ResourceTable::new();
        // WASI handles live in host memory the linear-memory cap does not count.
        table.set_max_capacity(MAX_HANDLES);
        let stderr = StderrTail::default();
        let clock = CallClock::default();
        ExtensionContext {
            wasi: WasiCtx::builder()
                .stderr(stderr.clone())
                .wall_clock(clock.clone())
                .build(),
            stderr,
            clock,
            table,
            memory: MemoryCap::new(memory_cap),
            call: None,
            storage: Place::vacant(),
        }
    }

    fn call(&mut self) -> wasmtime::Result<&mut HookCall> {
        self.call
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("an import used outside a hook call"))
    }

    /// The hook call and the store lent to it.
    fn call_and_store(&mut self) -> wasmtime::Result<(&mut HookCall, &mut Storage)> {
        match (self.call.as_mut(), self.storage.get_mut()) {
            (Some(call), Some(storage)) => Ok((call, storage)),
            _ => Err(wasmtime::format_err!("an import used outside a hook call")),
        }
    }
}

impl WasiView for ExtensionContext {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An instance, ready for hook calls.
pub struct Instance {
    pub store: Store<ExtensionContext>,
    pub bindings: RoomExtension,
}

/// The room as the extensions of one event see it.
pub struct SeenRoom {
    pub info: RoomInfo,
    /// Everyone, when an extension enabled in the room reads occupants; otherwise only those
    /// holding a nick an extension speaks as.
    pub occupants: Vec<Person>,
    pub ids: OccupantIds,
}

/// An occupant as every extension sees them but for the id, which is each extension's own.
#[derive(Clone)]
pub struct Person {
    /// With an empty `id`.
    pub shown: Occupant,
    pub real_jid: String,
}

impl SeenRoom {
    /// `person` as `extension` sees them.
    pub fn shown_to(&self, extension: &str, person: &Person) -> Occupant {
        Occupant {
            id: self.ids.id(extension, &person.real_jid),
            ..person.shown.clone()
        }
    }
}

impl muc::extension::model::Host for ExtensionContext {}

impl muc::extension::room::Host for ExtensionContext {
    fn info(&mut self) -> wasmtime::Result<RoomInfo> {
        Ok(self.call()?.room.info.clone())
    }

    fn occupants(&mut self) -> wasmtime::Result<Vec<Occupant>> {
        let call = self.call()?;
        if !call.reads_occupants {
            call.broke.get_or_insert_with(|| {
                "it called room.occupants without the read-occupants capability".to_string()
            });
            return Ok(Vec::new());
        }
        Ok(call
            .room
            .occupants
            .iter()
            .map(|person| call.room.shown_to(&call.extension, person))
            .collect())
    }

    fn setting(&mut self, name: String) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .call()?
            .settings
            .get(&name)
            .cloned()
            .unwrap_or_default())
    }

    fn say(&mut self, body: String) -> wasmtime::Result<Result<(), SayError>> {
        let call = self.call()?;
        let refusal = if call.nick.is_none() {
            Some((
                SayError::NoNick,
                "it has no approved nick to speak under".to_string(),
            ))
        } else if body.len() > MAX_SAID_BYTES {
            let why = format!("a message of {} bytes, over {MAX_SAID_BYTES}", body.len());
            Some((SayError::TooLong, why))
        } else if call.say_allowance == 0 {
            let why = "it sent more messages than its cap per minute".to_string();
            Some((SayError::RateLimited, why))
        } else {
            unfit_for_xml(&body).map(|what| (SayError::UnfitText, format!("a message with {what}")))
        };
        if let Some((error, why)) = refusal {
            call.refused = Some(why);
            return Ok(Err(error));
        }
        call.say_allowance -= 1;
        call.said.push(body);
        Ok(Ok(()))
    }
}

impl muc::extension::store::Host for ExtensionContext {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let (call, storage) = self.call_and_store()?;
        Ok(call
            .txn
            .get(storage, Tier::Extensions, &format!("{}{key}", call.prefix)))
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), PutError>> {
        let (call, storage) = self.call_and_store()?;
        if key.len() > MAX_KEY_BYTES {
            call.refused = Some(format!(
                "a key of {} bytes, over {MAX_KEY_BYTES}",
                key.len()
            ));
            return Ok(Err(PutError::KeyTooLong));
        }
        let prefix = call.prefix.len();
        let full_key = format!("{}{key}", call.prefix);
        let used = *call.used_bytes.get_or_insert_with(|| {
            call.txn
                .scan(storage, Tier::Extensions, &call.prefix, None, usize::MAX)
                .iter()
                .map(|(key, value)| key.len() - prefix + value.len())
                .sum()
        });
        let replaced = call
            .txn
            .get(storage, Tier::Extensions, &full_key)
            .map_or(0, |old| key.len() + old.len());
        let size = key.len() + value.len();
        let after = used - replaced + size;
        if after > call.quota_bytes || call.written_bytes + size > call.quota_bytes {
            call.refused = Some(format!(
                "its storage quota of {} bytes is full",
                call.quota_bytes
            ));
            return Ok(Err(PutError::QuotaFull));
        }
        if let Err(error) = call.txn.put(Tier::Extensions, full_key, value) {
            // The store's own bound on one value, past a quota the operator raised.
            call.refused = Some(format!("the store refused it: {error:?}"));
            return Ok(Err(PutError::QuotaFull));
        }
        call.written_bytes += size;
        call.used_bytes = Some(after);
        Ok(Ok(()))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let (call, storage) = self.call_and_store()?;
        let full_key = format!("{}{key}", call.prefix);
        if let (Some(used), Some(old)) = (
            call.used_bytes,
            call.txn.get(storage, Tier::Extensions, &full_key),
        ) {
            call.used_bytes = Some(used - key.len() - old.len());
        }
        call.txn.delete(Tier::Extensions, full_key);
        Ok(())
    }

    fn keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        let (call, storage) = self.call_and_store()?;
        let full_prefix = format!("{}{prefix}", call.prefix);
        Ok(call
            .txn
            .scan(storage, Tier::Extensions, &full_prefix, None, 1000)
            .into_iter()
            .map(|(key, _)| key[call.prefix.len()..].to_string())
            .collect())
    }
}

impl muc::extension::clock::Host for ExtensionContext {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.call()?.now_ms)
    }
}

impl muc::extension::log::Host for ExtensionContext {
    fn write(
        &mut self,
        level: muc::extension::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use muc::extension::log::Level;
        let call = self.call()?;
        call.logged += 1;
        if call.logged > MAX_LOG_LINES {
            return Ok(());
        }
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        let message = log_line(&message);
        let extension = call.tag.as_str();
        match level {
            Level::Debug => tracing::debug!(extension, "{message}"),
            Level::Info => tracing::info!(extension, "{message}"),
            Level::Warn => tracing::warn!(extension, "{message}"),
            Level::Error => tracing::error!(extension, "{message}"),
        }
        Ok(())
    }
}
