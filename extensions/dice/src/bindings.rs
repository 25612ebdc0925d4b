//! The component: the hooks over the WIT imports.

wit_bindgen::generate!({ path: "../../wit/extension", world: "room-extension" });

use exports::muc::extension::hooks::{Guest, JoinVerdict, Manifest, MessageVerdict};
use muc::extension::model::Occupant;
use muc::extension::{clock, room, store};

const COUNTER_KEY: &str = "seed";

struct Dice;

impl Guest for Dice {
    fn describe() -> Manifest {
        Manifest {
            name: "dice".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Rolls dice: !roll NdM, e.g. !roll 2d6".into(),
            nick: Some("dice".into()),
            command: Some("!roll".into()),
            settings: vec![],
            tick_seconds: None,
            capabilities: vec![],
        }
    }

    fn on_message(_sender: Occupant, _body: String) -> MessageVerdict {
        MessageVerdict::Pass
    }

    fn on_join(_joiner: Occupant) -> JoinVerdict {
        JoinVerdict::Allow
    }

    fn on_joined(_occupant: Occupant) {}

    fn on_left(_occupant: Occupant) {}

    fn on_command(sender: Occupant, arguments: String) {
        let reply = match crate::parse_roll(&arguments) {
            Some(roll) => {
                let faces = crate::roll_dice(roll, clock::now(), next_counter());
                crate::announce(&sender.nick, roll, &faces)
            }
            None => crate::usage(&sender.nick),
        };
        // Refused only past the cap per minute: the roll then goes unsaid, as the cap intends.
        let _ = room::say(&reply);
    }

    fn on_tick() {}
}

/// The roll counter, advanced in the store (a u64 in little-endian bytes).
fn next_counter() -> u64 {
    let counter = store::get(COUNTER_KEY)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    // A counter of 8 bytes cannot fill the quota; were it refused, rolls would only repeat.
    let _ = store::put(COUNTER_KEY, &counter.wrapping_add(1).to_le_bytes());
    counter
}

export!(Dice);
