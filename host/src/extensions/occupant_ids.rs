//! The `id` extensions see for an occupant: stable for one person (real bare JID) in one room,
//! different for each extension and room, and revealing nothing of the JID: HMAC-SHA256 under a
//! random key per room. The key lives in the room's extension storage, so it follows the room
//! (its lease in a shared store, its destruction: a room made again gives everyone new ids).

use std::fmt::Write;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Call;
use crate::storage::{extension_tier, Tier};

/// Beside the extensions' own storage in the room (`store/ROOM/NAME/`): no extension name
/// holds `@`.
const KEY_NAME: &str = "@occupant-ids";
/// Hex digits of an id: 128 bits.
const ID_DIGITS: usize = 32;

pub struct OccupantIds {
    key: Vec<u8>,
}

impl OccupantIds {
    /// The room's key, made (and written with the call) on first use.
    pub fn of_room(call: &mut Call, room: &str) -> OccupantIds {
        let (storage, txn) = call.store();
        let stored_at = format!("{}{KEY_NAME}", extension_tier::store_prefix(room));
        if let Some(key) = txn.get(storage, Tier::Extensions, &stored_at) {
            return OccupantIds { key };
        }
        let mut key = vec![0; 32];
        getrandom::fill(&mut key).expect("the system's random source");
        // Unwritable (a full store): the ids hold for this call only, and the next one tries
        // again.
        if let Err(error) = txn.put(Tier::Extensions, stored_at, key.clone()) {
            tracing::warn!(room, "occupant id key not stored: {error:?}");
        }
        OccupantIds { key }
    }

    pub fn id(&self, extension: &str, real_jid: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(extension.as_bytes());
        mac.update(b"\0");
        mac.update(real_jid.as_bytes());
        let digest = mac.finalize().into_bytes();
        digest[..ID_DIGITS / 2]
            .iter()
            .fold(String::new(), |mut id, byte| {
                let _ = write!(id, "{byte:02x}");
                id
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_per_person_per_extension_and_per_room_key() {
        let room = OccupantIds { key: vec![1; 32] };
        let other_room = OccupantIds { key: vec![2; 32] };
        let id = room.id("dice", "alice@localhost");
        assert_eq!(id.len(), ID_DIGITS);
        assert_eq!(id, room.id("dice", "alice@localhost"));
        assert_ne!(id, room.id("dice", "bob@localhost"));
        assert_ne!(id, room.id("poll", "alice@localhost"));
        assert_ne!(id, other_room.id("dice", "alice@localhost"));
        assert!(!id.contains("alice"));
    }
}
