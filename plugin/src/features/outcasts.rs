//! Banned users (XEP-0045 §9.1): an outcast may not enter, ever (`forbidden`), until an admin
//! lifts the ban.

use xmpp_parsers::muc::user::Affiliation;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::event::{Joiner, Refusal, RoomFeature};
use crate::room::Room;

pub struct Outcasts;

impl RoomFeature for Outcasts {
    fn check_join(&self, _room: &Room, joiner: &Joiner) -> Option<Refusal> {
        (*joiner.affiliation == Affiliation::Outcast).then_some(Refusal {
            type_: ErrorType::Auth,
            condition: DefinedCondition::Forbidden,
            text: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcasts_are_refused_and_nobody_else() {
        let room = Room::new_locked("r@muc.example");
        for affiliation in [Affiliation::Outcast, Affiliation::None, Affiliation::Owner] {
            let joiner = Joiner {
                affiliation: &affiliation,
                password: None,
                occupant_count: 0,
                guest: None,
            };
            let refused = Outcasts.check_join(&room, &joiner).map(|r| r.condition);
            let expected =
                (affiliation == Affiliation::Outcast).then_some(DefinedCondition::Forbidden);
            assert_eq!(refused, expected);
        }
    }
}
