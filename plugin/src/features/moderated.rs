//! Moderated rooms (XEP-0045 §8.3-8.5, §10.1.3): newcomers without an affiliation enter as
//! visitors, and only occupants with voice (participants and moderators) may speak.

use xmpp_parsers::muc::user::Role;

use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::config::FieldSpec;
use crate::event::{Refusal, RoomFeature};
use crate::occupant::Occupant;
use crate::room::Room;

pub use crate::rules::moderated::{default_role, is_moderated, FIELD};

/// Whether an occupant may send groupchat messages.
pub fn has_voice(role: &Role) -> bool {
    matches!(role, Role::Moderator | Role::Participant)
}

pub struct Moderated;

impl RoomFeature for Moderated {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn check_groupchat(
        &self,
        _room: &Room,
        sender: &Occupant,
        _message: &Element,
    ) -> Option<Refusal> {
        (!has_voice(&sender.role())).then_some(Refusal {
            type_: ErrorType::Auth,
            condition: DefinedCondition::Forbidden,
            text: None,
        })
    }

    fn disco_features(&self, room: &Room) -> Vec<&'static str> {
        vec![if is_moderated(room) {
            "muc_moderated"
        } else {
            "muc_unmoderated"
        }]
    }
}

#[cfg(test)]
mod tests {
    use xmpp_parsers::muc::user::Affiliation;

    use super::*;

    #[test]
    fn in_a_moderated_room_newcomers_are_visitors_and_members_keep_voice() {
        let mut room = Room::new_locked("r@muc.example");
        assert_eq!(default_role(&room, &Affiliation::None), Role::Participant);
        assert_eq!(Moderated.disco_features(&room), ["muc_unmoderated"]);
        room.config.insert(FIELD.var.into(), true.into());
        assert_eq!(default_role(&room, &Affiliation::None), Role::Visitor);
        assert_eq!(default_role(&room, &Affiliation::Member), Role::Participant);
        assert_eq!(default_role(&room, &Affiliation::Admin), Role::Moderator);
        assert!(!has_voice(&Role::Visitor) && has_voice(&Role::Participant));
        assert_eq!(Moderated.disco_features(&room), ["muc_moderated"]);
    }
}
