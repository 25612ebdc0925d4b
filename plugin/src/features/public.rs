//! Public and hidden rooms (XEP-0045 §10.1.3): only public rooms are listed in the service's
//! disco#items.

use crate::config::FieldSpec;
use crate::event::RoomFeature;
use crate::room::Room;

pub use crate::room::public::{is_public, FIELD};

pub struct Public;

impl RoomFeature for Public {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn disco_features(&self, room: &Room) -> Vec<&'static str> {
        vec![if is_public(room) {
            "muc_public"
        } else {
            "muc_hidden"
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_public_unless_hidden() {
        let mut room = Room::new_locked("r@muc.example");
        assert!(is_public(&room));
        assert_eq!(Public.disco_features(&room), ["muc_public"]);
        room.config.insert(FIELD.var.into(), false.into());
        assert!(!is_public(&room));
        assert_eq!(Public.disco_features(&room), ["muc_hidden"]);
    }
}
