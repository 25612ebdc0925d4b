//! What the MUC logic needs from its host: the WIT imports, as a Rust trait.
//!
//! The wasm binding layer implements it over the real imports; unit tests implement it in memory.
//! Every write and send is part of the current call's transaction (see `wit/muc-plugin.wit`).

use minidom::Element;
use xmpp_parsers::data_forms::Field;
use xmpp_parsers::muc::user::{Affiliation, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Survives restarts: rooms, configuration, affiliations.
    Durable,
    /// Survives plugin swaps, not restarts: occupants and their presence.
    Volatile,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

/// What the host already parsed from an inbound stanza.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub kind: StanzaKind,
    pub type_: Option<String>,
    pub from: String,
    pub to: String,
    pub id: Option<String>,
}

/// A failure of the plugin itself (not of the client's request): the host rolls the call back.
#[derive(Debug, PartialEq, Eq)]
pub struct Fault(pub String);

impl<E: std::fmt::Display> From<E> for Fault {
    fn from(error: E) -> Self {
        Fault(error.to_string())
    }
}

pub trait Host {
    fn get(&mut self, tier: Tier, key: &str) -> Option<Vec<u8>>;
    fn put(&mut self, tier: Tier, key: &str, value: Vec<u8>) -> Result<(), Fault>;
    fn delete(&mut self, tier: Tier, key: &str);
    fn scan(
        &mut self,
        tier: Tier,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Vec<(String, Vec<u8>)>;
    fn delete_prefix(&mut self, tier: Tier, prefix: &str) -> u32;
    fn send(&mut self, stanza: Element) -> Result<(), Fault>;
    /// `send` for a stanza the caller has serialised already (an archived one, say), so it is
    /// not parsed again here.
    fn send_serialised(&mut self, stanza: String) -> Result<(), Fault> {
        let stanza: Element = stanza
            .parse()
            .map_err(|e| Fault(format!("not a stanza: {e}")))?;
        self.send(stanza)
    }
    /// One copy per recipient, the host setting `to`.
    fn broadcast(&mut self, stanza: Element, recipients: &[String]) -> Result<(), Fault>;
    /// One copy per key under `prefix` in `tier`, `to` being the rest of the key. The stanza
    /// comes serialised: the caller often has it so already (for the history).
    fn broadcast_to_keys(&mut self, stanza: &str, tier: Tier, prefix: &str) -> Result<(), Fault> {
        let stanza: Element = stanza
            .parse()
            .map_err(|e| Fault(format!("not a stanza: {e}")))?;
        let recipients: Vec<String> = self
            .scan(tier, prefix, None, u32::MAX)
            .into_iter()
            .map(|(key, _)| key[prefix.len()..].to_string())
            .collect();
        self.broadcast(stanza, &recipients)
    }
    fn set_timer(&mut self, key: &str, at_ms: u64);
    fn cancel_timer(&mut self, key: &str);
    fn now_ms(&mut self) -> u64;
    fn unique_id(&mut self) -> String;
    fn log(&mut self, level: Level, message: &str);

    // Room extensions, as the host runs them (`muc:plugin/extensions`). The defaults are a host
    // without any.
    fn extensions_active(&mut self, _room: &str) -> bool {
        false
    }
    /// What a groupchat message's hook needs; by default, as `extensions_active` says, with
    /// every occupant.
    fn extension_message_hooks(&mut self, room: &str) -> MessageHooks {
        if self.extensions_active(room) {
            MessageHooks::WithOccupants
        } else {
            MessageHooks::None
        }
    }
    fn extension_hook(&mut self, _room: &RoomView, _event: HookEvent) -> HookOutcome {
        HookOutcome {
            verdict: Verdict::Pass,
            said: Vec::new(),
            next_tick: TickRequest::Keep,
        }
    }
    fn extension_form_fields(&mut self, _room: &str) -> Vec<Field> {
        Vec::new()
    }
    fn configure_extensions(
        &mut self,
        _room: &RoomView,
        _submitted: &[(String, Vec<String>)],
    ) -> Result<Configured, String> {
        Ok(Configured::default())
    }
    fn forget_extensions(&mut self, _room: &str) {}

    // Each room's message archive (`muc:plugin/archive`).
    fn archive_append(&mut self, room: &str, entry: ArchiveEntry) -> Result<(), ArchiveWriteError>;
    fn archive_query(
        &mut self,
        room: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, ArchiveQueryError>;
    /// False when no entry has this id.
    fn archive_replace(
        &mut self,
        room: &str,
        id: &str,
        stanza: &str,
    ) -> Result<bool, ArchiveWriteError>;
    /// Keeps only the room's newest `keep` entries.
    fn archive_trim(&mut self, room: &str, keep: u32);
    fn archive_delete(&mut self, room: &str);
}

/// One archived message (`archive.entry`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// The room's stanza-id of the message.
    pub id: String,
    pub at_ms: u64,
    /// The sender's occupant JID.
    pub sender: String,
    pub occupant_id: Option<String>,
    /// The sender's real full JID.
    pub real_jid: Option<String>,
    /// The message as broadcast, without `to`.
    pub stanza: String,
}

/// Which entries a query ranges over (`archive.filter`); `ids` empty: any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveFilter {
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub with: Option<String>,
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    pub ids: Vec<String>,
}

/// Which page of the filtered range (`archive.position`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchivePosition {
    Oldest,
    Newest,
    After(String),
    Before(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub filter: ArchiveFilter,
    pub position: ArchivePosition,
    pub limit: u32,
}

/// A page of entries, oldest first (`archive.page`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    pub entries: Vec<ArchiveEntry>,
    /// Nothing in the filtered range lies beyond the page in the direction read.
    pub complete: bool,
    /// Entries the filter matches.
    pub count: u64,
    /// Entries of the filtered range before the page's first.
    pub index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveQueryError {
    /// An id named as a position or bound is not in the archive.
    ItemNotFound(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveWriteError {
    /// Over the host's value cap or the call's quota: the request's fault.
    Refused(String),
    DuplicateId(String),
}

/// The room as the host's room extensions see it (`muc:plugin/extensions`).
#[derive(Clone, Debug)]
pub struct RoomView {
    pub jid: String,
    pub name: String,
    pub subject: Option<String>,
    pub non_anonymous: bool,
    /// Bare JIDs of the room's owners: the host tells them of extension faults.
    pub owners: Vec<String>,
    pub occupants: Vec<OccupantView>,
}

#[derive(Clone, Debug)]
pub struct OccupantView {
    pub nick: String,
    pub role: Role,
    pub affiliation: Affiliation,
    pub bare_jid: String,
}

/// What a groupchat message's hook needs (`message-hooks-need`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageHooks {
    None,
    /// The room's view needs only the occupants holding these nicks (the ones extensions speak
    /// as): none reads the room.
    OccupantsNamed(Vec<String>),
    WithOccupants,
}

#[derive(Clone, Debug)]
pub enum HookEvent {
    Message { sender: OccupantView, body: String },
    Join(OccupantView),
    Joined(OccupantView),
    Left(OccupantView),
    Tick,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Rewrite(String),
    Refuse(String),
}

/// A groupchat message an extension says in the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    pub nick: String,
    pub body: String,
}

/// When the room's extensions want their next tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TickRequest {
    /// As asked before.
    #[default]
    Keep,
    /// At this time (ms since the Unix epoch).
    At(u64),
    Stop,
}

#[derive(Clone, Debug)]
pub struct HookOutcome {
    pub verdict: Verdict,
    pub said: Vec<Said>,
    pub next_tick: TickRequest,
}

#[derive(Clone, Debug, Default)]
pub struct Configured {
    pub changed: bool,
    pub next_tick: TickRequest,
}
