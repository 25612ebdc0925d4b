//! Room size limit (XEP-0045 §7.2.10, §10.1.3 `maxusers`): a full room refuses newcomers with
//! `service-unavailable`; owners and admins still enter. 0 means no limit.

use xmpp_parsers::muc::user::Affiliation;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::config::{FieldSpec, Kind};
use crate::event::{Joiner, Refusal, RoomFeature};
use crate::room::Room;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_maxusers",
    label: "Maximum number of occupants (0 for no limit)",
    kind: Kind::Number {
        default: 0,
        max: 100_000,
    },
};

pub struct MaxUsers;

impl RoomFeature for MaxUsers {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn check_join(&self, room: &Room, joiner: &Joiner) -> Option<Refusal> {
        let limit = FIELD.number(&room.config) as usize;
        let privileged = matches!(joiner.affiliation, Affiliation::Owner | Affiliation::Admin);
        (limit > 0 && joiner.occupant_count >= limit && !privileged).then_some(Refusal {
            type_: ErrorType::Wait,
            condition: DefinedCondition::ServiceUnavailable,
            text: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_room_refuses_all_but_owners_and_admins() {
        let mut room = Room::new_locked("r@muc.example");
        room.config.insert(FIELD.var.into(), 2.into());
        let joiner = |affiliation, occupant_count| Joiner {
            affiliation,
            password: None,
            occupant_count,
            guest: None,
        };
        assert!(MaxUsers
            .check_join(&room, &joiner(&Affiliation::None, 1))
            .is_none());
        assert!(MaxUsers
            .check_join(&room, &joiner(&Affiliation::Member, 2))
            .is_some());
        assert!(MaxUsers
            .check_join(&room, &joiner(&Affiliation::Admin, 2))
            .is_none());
        assert!(MaxUsers
            .check_join(&room, &joiner(&Affiliation::Owner, 5))
            .is_none());
    }
}
