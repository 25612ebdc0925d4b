//! Room lock (XEP-0045 §10.1.1): a new room refuses everyone but its owners until it is
//! configured, answering `item-not-found` as if it did not exist yet. A room left locked is
//! destroyed after [`TIMEOUT_MS`] by a timer set when it is created. Its creator, already in
//! it, still sees it (disco, ping) while configuring it.

use xmpp_parsers::muc::user::Affiliation;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::event::{ConfigSubmit, Joiner, Refusal, RoomFeature};
use crate::host::{Fault, Host};
use crate::occupant::Occupant;
use crate::room::Room;

/// How long a new room waits for its owner's configuration.
pub const TIMEOUT_MS: u64 = 30 * 60 * 1000;

pub fn timer_key(room: &str) -> String {
    format!("lock/{room}")
}

/// The room a lock timer is for.
pub fn timer_room(key: &str) -> Option<&str> {
    key.strip_prefix("lock/")
}

/// The room as `from` may see it: a locked room exists only for those already in it.
pub fn visible_to(host: &mut dyn Host, room_jid: &str, from: &str) -> Result<Option<Room>, Fault> {
    Ok(match Room::load(host, room_jid)? {
        Some(room) if room.locked && Occupant::of_session(host, room_jid, from)?.is_none() => None,
        room => room,
    })
}

pub struct Lock;

impl RoomFeature for Lock {
    /// A new room waits [`TIMEOUT_MS`] for its configuration.
    fn created(&self, host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
        let due = host.now_ms() + TIMEOUT_MS;
        host.set_timer(&timer_key(&room.jid), due);
        Ok(())
    }

    fn configured(&self, host: &mut dyn Host, submit: &ConfigSubmit) -> Result<(), Fault> {
        host.cancel_timer(&timer_key(&submit.room.jid));
        Ok(())
    }

    fn destroyed(&self, host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
        host.cancel_timer(&timer_key(&room.jid));
        Ok(())
    }

    fn check_join(&self, room: &Room, joiner: &Joiner) -> Option<Refusal> {
        (room.locked && *joiner.affiliation != Affiliation::Owner).then_some(Refusal {
            type_: ErrorType::Cancel,
            condition: DefinedCondition::ItemNotFound,
            text: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner(affiliation: &Affiliation) -> Joiner<'_> {
        Joiner {
            affiliation,
            password: None,
            occupant_count: 1,
            guest: None,
        }
    }

    #[test]
    fn a_locked_room_admits_only_owners() {
        let locked = Room::new_locked("r@muc.example");
        assert_eq!(Lock.check_join(&locked, &joiner(&Affiliation::Owner)), None);
        for other in [Affiliation::Admin, Affiliation::Member, Affiliation::None] {
            let refusal = Lock.check_join(&locked, &joiner(&other)).unwrap();
            assert_eq!(refusal.condition, DefinedCondition::ItemNotFound);
        }
    }

    #[test]
    fn an_unlocked_room_leaves_the_decision_to_other_features() {
        let open = Room {
            locked: false,
            ..Room::new_locked("r@muc.example")
        };
        assert_eq!(Lock.check_join(&open, &joiner(&Affiliation::None)), None);
    }

    #[test]
    fn timer_keys_name_their_room() {
        assert_eq!(
            timer_room(&timer_key("r@muc.example")),
            Some("r@muc.example")
        );
        assert_eq!(timer_room("other/r@muc.example"), None);
    }
}
