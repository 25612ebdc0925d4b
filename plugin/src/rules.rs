//! Room rules that more than one feature (and the core) read: whether a room is members-only
//! (who may be in it) and its password. The feature that owns each field re-exports it and
//! answers the events; the rule itself lives here so that no feature imports another. (The
//! rules the room record itself depends on, persistence, publicity and name, are in `room.rs`.)

pub mod members_only {
    use xmpp_parsers::muc::user::Affiliation;

    use crate::config::{FieldSpec, Kind};
    use crate::room::Room;

    pub const FIELD: FieldSpec = FieldSpec {
        var: "muc#roomconfig_membersonly",
        label: "Make room members-only",
        kind: Kind::Boolean(false),
    };

    pub fn is_members_only(room: &Room) -> bool {
        FIELD.flag(&room.config)
    }

    /// Whether a user with `affiliation` may be in the room.
    pub fn admits(room: &Room, affiliation: &Affiliation) -> bool {
        !is_members_only(room)
            || matches!(
                affiliation,
                Affiliation::Owner | Affiliation::Admin | Affiliation::Member
            )
    }
}

pub mod password {
    use crate::config::{FieldSpec, Kind};
    use crate::room::Room;

    pub const PROTECTED: FieldSpec = FieldSpec {
        var: "muc#roomconfig_passwordprotectedroom",
        label: "Password required to enter",
        kind: Kind::Boolean(false),
    };
    pub const SECRET: FieldSpec = FieldSpec {
        var: "muc#roomconfig_roomsecret",
        label: "Password",
        kind: Kind::Private { max_chars: 256 },
    };

    pub fn is_protected(room: &Room) -> bool {
        let switched_off = room.config.get(PROTECTED.var) == Some(&serde_json::Value::Bool(false));
        !SECRET.text(&room.config).is_empty() && !switched_off
    }

    /// The room's password, for invitations (XEP-0045 §7.8.2).
    pub fn secret(room: &Room) -> Option<&str> {
        is_protected(room).then(|| SECRET.text(&room.config))
    }
}
