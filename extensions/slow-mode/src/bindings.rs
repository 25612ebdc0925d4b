//! The component: the hooks over the WIT imports.

wit_bindgen::generate!({ path: "../../wit/extension", world: "room-extension" });

use exports::muc::extension::hooks::{Guest, JoinVerdict, Manifest, MessageVerdict};
use muc::extension::model::{Occupant, Role, Setting, SettingKind};
use muc::extension::{clock, room, store};

struct SlowMode;

impl Guest for SlowMode {
    fn describe() -> Manifest {
        Manifest {
            name: "slow-mode".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Lets each occupant send one message every so many seconds".into(),
            nick: None,
            command: None,
            settings: vec![Setting {
                name: "seconds".into(),
                label: "Seconds between two messages of one occupant".into(),
                kind: SettingKind::Integer,
                default: vec![crate::DEFAULT_SECONDS.to_string()],
                options: vec![],
            }],
            tick_seconds: None,
            capabilities: vec![],
        }
    }

    fn on_message(sender: Occupant, _body: String) -> MessageVerdict {
        if sender.role == Role::Moderator {
            return MessageVerdict::Pass;
        }
        let key = crate::last_message_key(&sender.id);
        let last = store::get(&key).and_then(|bytes| crate::decode_timestamp(&bytes));
        let now = clock::now();
        let seconds = crate::parse_seconds(&room::setting("seconds"));
        match crate::seconds_to_wait(last, now, seconds) {
            Some(left) => MessageVerdict::Reject(crate::rejection(left)),
            None => {
                // Past the quota the host counts the failed put as a fault; nothing to add.
                let _ = store::put(&key, now.to_string().as_bytes());
                MessageVerdict::Pass
            }
        }
    }

    fn on_join(_joiner: Occupant) -> JoinVerdict {
        JoinVerdict::Allow
    }

    fn on_joined(_occupant: Occupant) {}

    fn on_left(occupant: Occupant) {
        store::delete(&crate::last_message_key(&occupant.id));
    }

    fn on_command(_sender: Occupant, _arguments: String) {}

    fn on_tick() {}
}

export!(SlowMode);
