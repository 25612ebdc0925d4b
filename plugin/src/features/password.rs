//! Password-protected rooms (XEP-0045 §7.2.6, §10.1.3): entering needs the room's secret;
//! a missing or wrong one gets `not-authorized`. Setting a secret protects the room (as clients
//! that only send `roomsecret`, and Prosody, expect) unless `passwordprotectedroom` is
//! explicitly off.

use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::config::FieldSpec;
use crate::event::{Joiner, Refusal, RoomFeature};
use crate::room::Room;

pub use crate::rules::password::{is_protected, secret, PROTECTED, SECRET};

pub struct Password;

impl RoomFeature for Password {
    fn fields(&self) -> &'static [FieldSpec] {
        &[PROTECTED, SECRET]
    }

    fn check_join(&self, room: &Room, joiner: &Joiner) -> Option<Refusal> {
        let right = secret(room).is_none_or(|secret| joiner.password == Some(secret));
        (!right).then_some(Refusal {
            type_: ErrorType::Auth,
            condition: DefinedCondition::NotAuthorized,
            text: None,
        })
    }

    fn disco_features(&self, room: &Room) -> Vec<&'static str> {
        vec![if is_protected(room) {
            "muc_passwordprotected"
        } else {
            "muc_unsecured"
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::muc::user::Affiliation;

    #[test]
    fn the_right_password_and_only_it_opens_a_protected_room() {
        let mut room = Room::new_locked("r@muc.example");
        let joiner = |password| Joiner {
            affiliation: &Affiliation::None,
            password,
            occupant_count: 0,
            guest: None,
        };
        assert!(Password.check_join(&room, &joiner(None)).is_none());
        room.config.insert(SECRET.var.into(), "capulet".into());
        assert!(Password
            .check_join(&room, &joiner(Some("capulet")))
            .is_none());
        for wrong in [None, Some("montague")] {
            let refused = Password.check_join(&room, &joiner(wrong)).unwrap();
            assert_eq!(refused.condition, DefinedCondition::NotAuthorized);
        }
        assert_eq!(Password.disco_features(&room), ["muc_passwordprotected"]);
        room.config.insert(PROTECTED.var.into(), false.into());
        assert!(
            Password.check_join(&room, &joiner(None)).is_none(),
            "explicitly off"
        );
    }
}
