//! Moderated rooms (XEP-0045 §8.3-8.5, §10.1.3): newcomers without an affiliation enter as
//! visitors, and only occupants with voice (participants and moderators) may speak.

use xmpp_parsers::muc::user::{Affiliation, Role};

use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::config::{FieldSpec, Kind};
use crate::event::{Refusal, RoomFeature};
use crate::occupant::Occupant;
use crate::room::Room;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_moderatedroom",
    label: "Make room moderated",
    kind: Kind::Boolean(false),
};

pub fn is_moderated(room: &Room) -> bool {
    FIELD.flag(&room.config)
}

/// The role a user enters with (XEP-0045 §5.1.2).
pub fn default_role(room: &Room, affiliation: &Affiliation) -> Role {
    match affiliation {
        Affiliation::Owner | Affiliation::Admin => Role::Moderator,
        Affiliation::None if is_moderated(room) => Role::Visitor,
        _ => Role::Participant,
    }
}

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
