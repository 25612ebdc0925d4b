//! {{name}}: a room extension. `!{{name}}` makes it greet the sender, with the owner's
//! `greeting` setting, and count how many times each person called it (in its store, which
//! outlives its instances, keyed by occupant id, which a nickname change keeps).
//!
//! The contract is `wit/room-extension.wit` (the `room-extension` world): read it for what each
//! hook is for, what the imports give and what the host counts as a fault.

wit_bindgen::generate!({ path: "wit", world: "room-extension" });

use exports::muc::extension::hooks::{Guest, JoinVerdict, Manifest, MessageVerdict};
use muc::extension::model::{Occupant, Setting, SettingKind};
use muc::extension::{room, store};

struct Extension;

impl Guest for Extension {
    /// Asked once, when the operator installs it: no import may be used here.
    fn describe() -> Manifest {
        Manifest {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Greets whoever says !{{name}}, counting their calls".into(),
            nick: Some("{{name}}".into()),
            command: Some("!{{name}}".into()),
            settings: vec![Setting {
                name: "greeting".into(),
                label: "How it greets".into(),
                kind: SettingKind::TextSingle,
                default: vec!["Hello".into()],
                options: vec![],
            }],
            tick_seconds: None,
            capabilities: vec![],
        }
    }

    fn on_command(sender: Occupant, _arguments: String) {
        let key = format!("calls/{}", sender.id);
        let calls = store::get(&key)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let greeting = room::setting("greeting").concat();
        // A refused put (quota full) or say (past the host's message rate) returns an error to
        // handle; here the count or the greeting is simply skipped.
        let _ = store::put(&key, calls.to_string().as_bytes());
        let _ = room::say(&format!("{greeting}, {}! That makes {calls}.", sender.nick));
    }

    // The other hooks give their "don't care" answer.
    fn on_message(_sender: Occupant, _body: String) -> MessageVerdict {
        MessageVerdict::Pass
    }

    fn on_join(_joiner: Occupant) -> JoinVerdict {
        JoinVerdict::Allow
    }

    fn on_joined(_occupant: Occupant) {}

    fn on_left(_occupant: Occupant) {}

    fn on_tick() {}
}

export!(Extension);
