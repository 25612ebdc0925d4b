//! Private messages between occupants (XEP-0045 §7.5, `muc#roomconfig_allowpm`): who may send
//! them.

use xmpp_parsers::muc::user::Role;

use crate::config::{FieldSpec, Kind};
use crate::event::RoomFeature;
use crate::room::Room;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_allowpm",
    label: "Who may send private messages",
    kind: Kind::Choice(&[
        ("anyone", "Anyone"),
        ("participants", "Participants and moderators"),
        ("moderators", "Moderators only"),
        ("none", "Nobody"),
    ]),
};

pub fn may_send(room: &Room, role: &Role) -> bool {
    match FIELD.text(&room.config) {
        "anyone" => *role != Role::None,
        "participants" => matches!(role, Role::Participant | Role::Moderator),
        "moderators" => *role == Role::Moderator,
        _ => false,
    }
}

pub struct AllowPm;

impl RoomFeature for AllowPm {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_admits_its_roles() {
        let mut room = Room::new_locked("r@muc.example");
        let table = [
            ("anyone", [true, true, true]),
            ("participants", [false, true, true]),
            ("moderators", [false, false, true]),
            ("none", [false, false, false]),
        ];
        for (setting, allowed) in table {
            room.config.insert(FIELD.var.into(), setting.into());
            let roles = [Role::Visitor, Role::Participant, Role::Moderator];
            let got: Vec<bool> = roles.iter().map(|role| may_send(&room, role)).collect();
            assert_eq!(got, allowed, "{setting}");
        }
    }
}
