//! Room rules that the store layer and more than one feature read: whether a room is
//! persistent (where its data lives), public (listed), members-only (who may be in it), what it
//! is called and its password. The feature that owns each field re-exports it and answers the
//! events; the rule itself lives here so that no feature imports another.

pub mod persistent {
    use crate::config::{FieldSpec, Kind};
    use crate::room::Room;

    pub const FIELD: FieldSpec = FieldSpec {
        var: "muc#roomconfig_persistentroom",
        label: "Make room persistent",
        kind: Kind::Boolean(false),
    };

    pub fn is_persistent(room: &Room) -> bool {
        FIELD.flag(&room.config)
    }
}

pub mod public {
    use crate::config::{FieldSpec, Kind};
    use crate::room::Room;

    pub const FIELD: FieldSpec = FieldSpec {
        var: "muc#roomconfig_publicroom",
        label: "Make room publicly searchable",
        kind: Kind::Boolean(true),
    };

    pub fn is_public(room: &Room) -> bool {
        FIELD.flag(&room.config)
    }
}

pub mod naming {
    use crate::config::{FieldSpec, Kind};
    use crate::room::Room;

    /// A title fits a client's window title and a room list's line.
    pub const NAME: FieldSpec = FieldSpec {
        var: "muc#roomconfig_roomname",
        label: "Title",
        kind: Kind::Text {
            default: "",
            max_chars: 200,
        },
    };

    /// The name to show for a room: its configured title, or its localpart (some clients
    /// misbehave on a nameless room).
    pub fn display_name(room: &Room) -> String {
        match NAME.text(&room.config) {
            "" => room.jid.split('@').next().unwrap_or_default().to_string(),
            name => name.to_string(),
        }
    }
}

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
        let switched_off =
            room.config.get(PROTECTED.var) == Some(&serde_json::Value::Bool(false));
        !SECRET.text(&room.config).is_empty() && !switched_off
    }

    /// The room's password, for invitations (XEP-0045 §7.8.2).
    pub fn secret(room: &Room) -> Option<&str> {
        is_protected(room).then(|| SECRET.text(&room.config))
    }
}
