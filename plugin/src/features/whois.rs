//! Who sees occupants' real JIDs (XEP-0045 §7.2.4, §10.1.3): in a semi-anonymous room only
//! moderators; in a non-anonymous room everyone, and the joiner is warned with status 100.

use xmpp_parsers::muc::user::Status;

use crate::config::{Config, FieldSpec};
use crate::event::RoomFeature;
use crate::room::Room;

pub use crate::rules::whois::{is_non_anonymous, sees_real_jids, FIELD};

pub struct Whois;

impl RoomFeature for Whois {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn join_statuses(&self, room: &Room) -> Vec<Status> {
        if is_non_anonymous(&room.config) {
            vec![Status::NonAnonymousRoom]
        } else {
            Vec::new()
        }
    }

    fn change_statuses(&self, before: &Config, after: &Config) -> Vec<Status> {
        match (is_non_anonymous(before), is_non_anonymous(after)) {
            (false, true) => vec![Status::ConfigRoomNonAnonymous],
            (true, false) => vec![Status::ConfigRoomSemiAnonymous],
            _ => Vec::new(),
        }
    }

    fn disco_features(&self, room: &Room) -> Vec<&'static str> {
        vec![if is_non_anonymous(&room.config) {
            "muc_nonanonymous"
        } else {
            "muc_semianonymous"
        }]
    }
}

#[cfg(test)]
mod tests {
    use xmpp_parsers::muc::user::Role;

    use super::*;

    #[test]
    fn real_jids_go_to_moderators_unless_the_room_is_non_anonymous() {
        let mut room = Room::new_locked("r@muc.example");
        assert!(sees_real_jids(&room, &Role::Moderator));
        assert!(!sees_real_jids(&room, &Role::Participant));
        assert!(Whois.join_statuses(&room).is_empty());
        room.config.insert(FIELD.var.into(), "anyone".into());
        assert!(sees_real_jids(&room, &Role::Visitor));
        assert_eq!(Whois.join_statuses(&room), vec![Status::NonAnonymousRoom]);
    }

    #[test]
    fn changes_are_announced_with_172_and_173() {
        let semi = Config::new();
        let mut non = Config::new();
        non.insert(FIELD.var.into(), "anyone".into());
        assert_eq!(
            Whois.change_statuses(&semi, &non),
            vec![Status::ConfigRoomNonAnonymous]
        );
        assert_eq!(
            Whois.change_statuses(&non, &semi),
            vec![Status::ConfigRoomSemiAnonymous]
        );
        assert!(Whois.change_statuses(&semi, &semi).is_empty());
    }
}
