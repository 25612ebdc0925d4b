//! The component: the hooks over the WIT imports.

wit_bindgen::generate!({ path: "../../wit/extension", world: "room-extension" });

use exports::muc::extension::hooks::{Guest, JoinVerdict, Manifest, MessageVerdict};
use muc::extension::model::{Occupant, Setting, SettingKind};
use muc::extension::room;

struct WordFilter;

impl Guest for WordFilter {
    fn describe() -> Manifest {
        Manifest {
            name: "word-filter".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Masks or rejects messages containing filtered words".into(),
            nick: None,
            command: None,
            settings: vec![
                Setting {
                    name: "words".into(),
                    label: "Filtered words, one per line".into(),
                    kind: SettingKind::TextMulti,
                    default: vec!["badword".into()],
                    options: vec![],
                },
                Setting {
                    name: "action".into(),
                    label: "What to do with a message containing one".into(),
                    kind: SettingKind::ListSingle,
                    default: vec!["mask".into()],
                    options: vec!["mask".into(), "reject".into()],
                },
            ],
            tick_seconds: None,
            capabilities: vec![],
        }
    }

    fn on_message(_sender: Occupant, body: String) -> MessageVerdict {
        let action = crate::parse_action(&room::setting("action"));
        match crate::check_message(&body, &words(), action) {
            crate::Verdict::Pass => MessageVerdict::Pass,
            crate::Verdict::Rewrite(body) => MessageVerdict::Rewrite(body),
            crate::Verdict::Reject => MessageVerdict::Reject(crate::REJECTION.into()),
        }
    }

    fn on_join(joiner: Occupant) -> JoinVerdict {
        if crate::nick_is_filtered(&joiner.nick, &words()) {
            JoinVerdict::Refuse(crate::NICK_REFUSAL.into())
        } else {
            JoinVerdict::Allow
        }
    }

    fn on_joined(_occupant: Occupant) {}

    fn on_left(_occupant: Occupant) {}

    fn on_command(_sender: Occupant, _arguments: String) {}

    fn on_tick() {}
}

fn words() -> Vec<String> {
    crate::parse_words(&room::setting("words"))
}

export!(WordFilter);
