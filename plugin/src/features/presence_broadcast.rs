//! Whose presence is broadcast (XEP-0045 §10.1.3 `presencebroadcast`): occupants whose role is
//! not listed are seen by moderators only; and with `none` listed, joiners also see the
//! unavailable presence of members who reserved a nickname and are not in the room.

use xmpp_parsers::muc::user::Role;

use crate::config::{FieldSpec, Kind};
use crate::event::RoomFeature;
use crate::occupant::role_name;
use crate::room::Room;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_presencebroadcast",
    label: "Roles whose presence is broadcast",
    kind: Kind::Choices {
        options: &[
            ("moderator", "Moderator"),
            ("participant", "Participant"),
            ("visitor", "Visitor"),
            ("none", "Members not in the room"),
        ],
        default: &["moderator", "participant", "visitor"],
    },
};

/// Whether the presence of an occupant with `role` goes to everyone (else to moderators only).
pub fn broadcasts(room: &Room, role: &Role) -> bool {
    FIELD
        .choices(&room.config)
        .iter()
        .any(|listed| listed == role_name(role))
}

/// Whether joiners see members who are not in the room.
pub fn shows_absent_members(room: &Room) -> bool {
    FIELD
        .choices(&room.config)
        .iter()
        .any(|listed| listed == "none")
}

/// Whether `recipient` sees the presence of an occupant with `role`.
pub fn visible_to(room: &Room, role: &Role, recipient: &Role) -> bool {
    broadcasts(room, role) || *recipient == Role::Moderator
}

pub struct PresenceBroadcast;

impl RoomFeature for PresenceBroadcast {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_roles_are_seen_by_moderators_only() {
        let mut room = Room::new_locked("r@muc.example");
        assert!(broadcasts(&room, &Role::Visitor) && !shows_absent_members(&room));
        room.config.insert(
            FIELD.var.into(),
            FIELD.parse(&["moderator".into(), "none".into()]).unwrap(),
        );
        assert!(broadcasts(&room, &Role::Moderator));
        assert!(!visible_to(&room, &Role::Participant, &Role::Participant));
        assert!(visible_to(&room, &Role::Participant, &Role::Moderator));
        assert!(shows_absent_members(&room));
        assert!(FIELD.parse(&["everyone".into()]).is_err());
    }
}
