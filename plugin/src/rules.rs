//! Room rules that more than one feature (and the core) read: whether a room is members-only
//! (who may be in it), its password, the role one enters with, who sees real JIDs, what a
//! subject change is, and how much history a join may replay. The feature that owns each field re-exports it and
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

pub mod moderated {
    use xmpp_parsers::muc::user::{Affiliation, Role};

    use crate::config::{FieldSpec, Kind};
    use crate::room::Room;

    pub const FIELD: FieldSpec = FieldSpec {
        var: "muc#roomconfig_moderatedroom",
        label: "Make room moderated",
        kind: Kind::Boolean(false),
    };

    pub fn is_moderated(room: &Room) -> bool {
        FIELD.flag(&room.config)
    }

    /// The role a user enters with (XEP-0045 §5.1.2).
    pub fn default_role(room: &Room, affiliation: &Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::None if is_moderated(room) => Role::Visitor,
            _ => Role::Participant,
        }
    }
}

pub mod whois {
    use xmpp_parsers::muc::user::Role;

    use crate::config::{Config, FieldSpec, Kind};
    use crate::room::Room;

    pub const FIELD: FieldSpec = FieldSpec {
        var: "muc#roomconfig_whois",
        label: "Who may discover real JIDs",
        kind: Kind::Choice(&[("moderators", "Moderators only"), ("anyone", "Anyone")]),
    };

    pub fn is_non_anonymous(config: &Config) -> bool {
        FIELD.text(config) == "anyone"
    }

    /// Whether an occupant with `role` sees other occupants' real JIDs.
    pub fn sees_real_jids(room: &Room, role: &Role) -> bool {
        *role == Role::Moderator || is_non_anonymous(&room.config)
    }
}

pub mod subject {
    use minidom::Element;
    use xmpp_parsers::ns;

    /// A groupchat message changes the subject when it has a `<subject/>` and neither a body
    /// nor a thread (XEP-0045 §8.1): with either, it is an ordinary message that happens to
    /// carry one.
    pub fn is_change(message: &Element) -> bool {
        message.has_child("subject", ns::JABBER_CLIENT)
            && !message.has_child("body", ns::JABBER_CLIENT)
            && !message.has_child("thread", ns::JABBER_CLIENT)
    }
}

/// How many messages a join may replay: the join history reads them, and the archive keeps at
/// least that many when archiving is off.
pub mod history {
    use crate::config::{FieldSpec, Kind};

    pub const FIELD: FieldSpec = FieldSpec {
        var: "muc#maxhistoryfetch",
        label: "Number of messages kept and sent to joiners",
        kind: Kind::Number {
            default: 20,
            max: 1000,
        },
    };
}
