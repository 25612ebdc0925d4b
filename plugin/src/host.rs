//! What the MUC logic needs from its host: the WIT imports, as a Rust trait.
//!
//! The wasm binding layer implements it over the real imports; unit tests implement it in memory.
//! Every write and send is part of the current call's transaction (see `wit/muc-plugin.wit`).

use minidom::Element;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Survives restarts: rooms, configuration, affiliations, history.
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
    /// One copy per recipient, the host setting `to`.
    fn broadcast(&mut self, stanza: Element, recipients: &[String]) -> Result<(), Fault>;
    fn set_timer(&mut self, key: &str, at_ms: u64);
    fn cancel_timer(&mut self, key: &str);
    fn now_ms(&mut self) -> u64;
    fn unique_id(&mut self) -> String;
    fn log(&mut self, level: Level, message: &str);
}
