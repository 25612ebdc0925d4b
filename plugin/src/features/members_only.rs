//! Members-only rooms (XEP-0045 §7.2.5, §10.1.3): only members, admins and owners enter
//! (others get `registration-required`); switching it on removes the non-members present, with
//! status 322, and losing membership removes one with 321.

use xmpp_parsers::muc::user::Affiliation;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::config::FieldSpec;
use crate::event::{Joiner, Refusal, RoomFeature};
use crate::room::Room;

pub use crate::rules::members_only::{admits, is_members_only, FIELD};

pub struct MembersOnly;

impl RoomFeature for MembersOnly {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn check_join(&self, room: &Room, joiner: &Joiner) -> Option<Refusal> {
        (!admits(room, joiner.affiliation) && *joiner.affiliation != Affiliation::Outcast)
            .then_some(Refusal {
                type_: ErrorType::Auth,
                condition: DefinedCondition::RegistrationRequired,
                text: None,
            })
    }

    fn disco_features(&self, room: &Room) -> Vec<&'static str> {
        vec![if is_members_only(room) {
            "muc_membersonly"
        } else {
            "muc_open"
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_members_and_above_enter_a_members_only_room() {
        let mut room = Room::new_locked("r@muc.example");
        room.locked = false;
        let joiner = |affiliation| Joiner {
            affiliation,
            password: None,
            occupant_count: 0,
            guest: None,
        };
        assert!(MembersOnly
            .check_join(&room, &joiner(&Affiliation::None))
            .is_none());
        room.config.insert(FIELD.var.into(), true.into());
        let refused = MembersOnly
            .check_join(&room, &joiner(&Affiliation::None))
            .unwrap();
        assert_eq!(refused.condition, DefinedCondition::RegistrationRequired);
        for admitted in [
            &Affiliation::Member,
            &Affiliation::Admin,
            &Affiliation::Owner,
        ] {
            assert!(MembersOnly.check_join(&room, &joiner(admitted)).is_none());
        }
        assert_eq!(MembersOnly.disco_features(&room), ["muc_membersonly"]);
    }
}
