//! The thin layer between the WIT world and the library: converts types, nothing else.

wit_bindgen::generate!({ path: "../wit", world: "muc-plugin" });

use minidom::Element;

use exports::muc::plugin::guest::{self, Guest, PluginInfo};
use muc::plugin::{clock, ids, logging, routing, storage, timers, types};

use crate::host::{Envelope, Fault, Host, Level, StanzaKind, Tier};
use crate::service::{self, Muc, Settings};

/// The instance's settings, given by `init`. A component instance is single-threaded.
static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

struct Component;

impl Guest for Component {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: service::NAME.into(),
            version: service::VERSION.into(),
            contract: service::CONTRACT.into(),
        }
    }

    fn init(settings: guest::Settings) -> Result<(), String> {
        SETTINGS
            .set(Settings {
                service: settings.service,
                admins: settings.admins,
            })
            .map_err(|_| "init called twice".to_string())
    }

    fn upgrade(from_version: String) -> Result<(), String> {
        with_muc(|muc, host| muc.upgrade(host, &from_version))
    }

    fn handle_stanza(stanza: types::Stanza) -> Result<(), String> {
        let envelope = envelope(stanza.envelope);
        with_muc(|muc, host| muc.handle_stanza(host, &envelope, &stanza.xml))
    }

    fn on_timer(key: String) -> Result<(), String> {
        with_muc(|muc, host| muc.on_timer(host, &key))
    }

    fn on_shutdown() -> Result<(), String> {
        with_muc(|muc, host| muc.on_shutdown(host))
    }
}

fn with_muc(call: impl FnOnce(&Muc, &mut dyn Host) -> Result<(), Fault>) -> Result<(), String> {
    let settings = SETTINGS.get().ok_or("called before init")?;
    let muc = Muc::new(settings.clone());
    call(&muc, &mut WitHost).map_err(|Fault(reason)| reason)
}

fn envelope(envelope: types::Envelope) -> Envelope {
    Envelope {
        kind: match envelope.kind {
            types::StanzaKind::Message => StanzaKind::Message,
            types::StanzaKind::Presence => StanzaKind::Presence,
            types::StanzaKind::Iq => StanzaKind::Iq,
        },
        type_: envelope.type_,
        from: envelope.from,
        to: envelope.to,
        id: envelope.id,
    }
}

/// The host, reached through the WIT imports.
struct WitHost;

fn tier(tier: Tier) -> storage::Tier {
    match tier {
        Tier::Durable => storage::Tier::Durable,
        Tier::Volatile => storage::Tier::Volatile,
    }
}

impl Host for WitHost {
    fn get(&mut self, t: Tier, key: &str) -> Option<Vec<u8>> {
        storage::get(tier(t), key)
    }

    fn put(&mut self, t: Tier, key: &str, value: Vec<u8>) -> Result<(), Fault> {
        storage::put(tier(t), key, &value).map_err(|e| Fault(format!("{e:?}")))
    }

    fn delete(&mut self, t: Tier, key: &str) {
        storage::delete(tier(t), key)
    }

    fn scan(
        &mut self,
        t: Tier,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Vec<(String, Vec<u8>)> {
        storage::scan(tier(t), prefix, start_after, limit)
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect()
    }

    fn delete_prefix(&mut self, t: Tier, prefix: &str) -> u32 {
        storage::delete_prefix(tier(t), prefix)
    }

    fn send(&mut self, stanza: Element) -> Result<(), Fault> {
        routing::send(&String::from(&stanza)).map_err(|e| Fault(format!("{e:?}")))
    }

    fn broadcast(&mut self, stanza: Element, recipients: &[String]) -> Result<(), Fault> {
        routing::broadcast(&String::from(&stanza), recipients).map_err(|e| Fault(format!("{e:?}")))
    }

    fn set_timer(&mut self, key: &str, at_ms: u64) {
        timers::set(key, at_ms)
    }

    fn cancel_timer(&mut self, key: &str) {
        timers::cancel(key)
    }

    fn now_ms(&mut self) -> u64 {
        clock::now()
    }

    fn unique_id(&mut self) -> String {
        ids::unique_id()
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => logging::Level::Trace,
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
            Level::Error => logging::Level::Error,
        };
        logging::log(level, message)
    }
}

export!(Component);
