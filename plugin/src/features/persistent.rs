//! Persistent and temporary rooms (XEP-0045 §10.1.3): a temporary room is destroyed when its
//! last occupant leaves and lives in the volatile tier; a persistent one is kept durably.

use crate::config::FieldSpec;
use crate::event::{ConfigSubmit, RoomFeature};
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::room::Room;

pub use crate::room::persistent::{is_persistent, FIELD};

pub struct Persistent;

impl RoomFeature for Persistent {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn disco_features(&self, room: &Room) -> Vec<&'static str> {
        vec![if is_persistent(room) {
            "muc_persistent"
        } else {
            "muc_temporary"
        }]
    }

    fn configured(&self, host: &mut dyn Host, submit: &ConfigSubmit) -> Result<(), Fault> {
        move_to_own_tier(host, submit.room, submit.before_tier)
    }
}

/// After a change of persistence (the record already saved in its new tier): drops the record
/// from the old tier. (The room's archive is the host's, durable whatever the tier.)
pub fn move_to_own_tier(host: &mut dyn Host, room: &Room, from: Tier) -> Result<(), Fault> {
    if room.tier() != from {
        host.delete(from, &keys::room(&room.jid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;

    #[test]
    fn a_room_made_persistent_moves_its_record_to_the_durable_tier() {
        let mut host = MemoryHost::default();
        let mut room = Room::new_locked("r@muc.example");
        room.save(&mut host).unwrap();
        host.volatile
            .insert("room/r@muc.example/occupant/a".into(), b"o".to_vec());
        assert_eq!(Persistent.disco_features(&room), ["muc_temporary"]);

        room.config.insert(FIELD.var.into(), true.into());
        room.save(&mut host).unwrap();
        move_to_own_tier(&mut host, &room, Tier::Volatile).unwrap();
        assert!(Room::load(&mut host, "r@muc.example")
            .unwrap()
            .is_some_and(|r| is_persistent(&r)));
        assert_eq!(
            host.volatile.keys().collect::<Vec<_>>(),
            ["room/r@muc.example/occupant/a"],
            "occupants stay live"
        );
        assert_eq!(Persistent.disco_features(&room), ["muc_persistent"]);
    }
}
