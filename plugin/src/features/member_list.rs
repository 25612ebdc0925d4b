//! Who may read the member list (XEP-0045 §10.1.3 `getmemberlist`, §9.5): owners and admins
//! always; members, and occupants whose role is listed. The outcast list stays with owners and
//! admins.

use xmpp_parsers::muc::user::{Affiliation, Role};

use crate::config::{FieldSpec, Kind};
use crate::event::RoomFeature;
use crate::occupant::role_name;
use crate::room::Room;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_getmemberlist",
    label: "Roles that may retrieve the member list",
    kind: Kind::Choices {
        options: &[
            ("moderator", "Moderator"),
            ("participant", "Participant"),
            ("visitor", "Visitor"),
        ],
        default: &["moderator", "participant", "visitor"],
    },
};

/// Whether someone with `affiliation` and `role` may read the list of `wanted`.
pub fn may_read(room: &Room, affiliation: &Affiliation, role: &Role, wanted: &Affiliation) -> bool {
    let high = matches!(affiliation, Affiliation::Owner | Affiliation::Admin);
    let listed = *role != Role::None
        && FIELD
            .choices(&room.config)
            .iter()
            .any(|r| r == role_name(role));
    high || (*wanted != Affiliation::Outcast && (*affiliation == Affiliation::Member || listed))
}

pub struct MemberList;

impl RoomFeature for MemberList {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_reads_which_list() {
        let mut room = Room::new_locked("r@muc.example");
        let (a, r) = (Affiliation::None, Role::Visitor);
        assert!(may_read(&room, &a, &r, &Affiliation::Member));
        assert!(!may_read(&room, &a, &r, &Affiliation::Outcast));
        assert!(
            !may_read(&room, &Affiliation::None, &Role::None, &Affiliation::Member),
            "strangers"
        );
        assert!(
            may_read(
                &room,
                &Affiliation::Member,
                &Role::None,
                &Affiliation::Owner
            ),
            "members"
        );
        assert!(may_read(
            &room,
            &Affiliation::Admin,
            &Role::None,
            &Affiliation::Outcast
        ));
        room.config.insert(
            FIELD.var.into(),
            FIELD.parse(&["moderator".into()]).unwrap(),
        );
        assert!(!may_read(&room, &a, &r, &Affiliation::Member));
        assert!(may_read(
            &room,
            &Affiliation::None,
            &Role::Moderator,
            &Affiliation::Member
        ));
    }
}
