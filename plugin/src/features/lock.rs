//! Room lock (XEP-0045 §10.1.1): a new room refuses everyone but its owners until it is
//! configured, answering `item-not-found` as if it did not exist yet.

use xmpp_parsers::muc::user::Affiliation;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::room::Room;

pub fn refuse_join(room: &Room, affiliation: &Affiliation) -> Option<DefinedCondition> {
    (room.locked && *affiliation != Affiliation::Owner).then_some(DefinedCondition::ItemNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_room_admits_only_owners() {
        let locked = Room::new_locked("r@muc.example");
        assert_eq!(refuse_join(&locked, &Affiliation::Owner), None);
        for other in [Affiliation::Admin, Affiliation::Member, Affiliation::None] {
            assert_eq!(refuse_join(&locked, &other), Some(DefinedCondition::ItemNotFound));
        }
    }

    #[test]
    fn an_unlocked_room_leaves_the_decision_to_other_features() {
        let open = Room { locked: false, ..Room::new_locked("r@muc.example") };
        assert_eq!(refuse_join(&open, &Affiliation::None), None);
    }
}
