//! Public logging (XEP-0045 §10.1.3): the room says it is logged, with status 170 to each joiner
//! and 170/171 when the setting changes. (The log itself is the archive's job, not the room's.)

use xmpp_parsers::muc::user::Status;

use crate::config::{Config, FieldSpec, Kind};
use crate::event::RoomFeature;
use crate::room::Room;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_enablelogging",
    label: "Enable public logging",
    kind: Kind::Boolean(false),
};

pub struct Logging;

impl RoomFeature for Logging {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn join_statuses(&self, room: &Room) -> Vec<Status> {
        if FIELD.flag(&room.config) {
            vec![Status::ConfigRoomLoggingEnabled]
        } else {
            Vec::new()
        }
    }

    fn change_statuses(&self, before: &Config, after: &Config) -> Vec<Status> {
        match (FIELD.flag(before), FIELD.flag(after)) {
            (false, true) => vec![Status::ConfigRoomLoggingEnabled],
            (true, false) => vec![Status::ConfigRoomLoggingDisabled],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_room_says_so_on_join_and_on_change() {
        let mut room = Room::new_locked("r@muc.example");
        assert!(Logging.join_statuses(&room).is_empty());
        let before = room.config.clone();
        room.config.insert(FIELD.var.into(), true.into());
        assert_eq!(
            Logging.join_statuses(&room),
            vec![Status::ConfigRoomLoggingEnabled]
        );
        assert_eq!(
            Logging.change_statuses(&before, &room.config),
            vec![Status::ConfigRoomLoggingEnabled]
        );
        assert_eq!(
            Logging.change_statuses(&room.config, &before),
            vec![Status::ConfigRoomLoggingDisabled]
        );
    }
}
