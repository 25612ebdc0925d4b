//! Occupants: live state, kept in the volatile tier so it survives plugin swaps.

use serde::{Deserialize, Serialize};
use xmpp_parsers::muc::user::Role;

use crate::host::{Fault, Host, Tier};
use crate::keys;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Occupant {
    pub nick: String,
    pub bare_jid: String,
    /// `moderator`, `participant` or `visitor`.
    pub role: String,
    /// Every client of this user in the room under this nickname (XEP-0045 §7.2.1 allows
    /// several), with the presence each last sent.
    pub sessions: Vec<Session>,
    /// Its occupant id (XEP-0421), hashed once when it joined rather than on every stanza it
    /// sends or every join that shows it. Records an earlier plugin wrote lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupant_id: Option<String>,
}

/// What others are shown of an occupant (room extensions' view of the room): the record decoded
/// without its sessions, which is most of the work of decoding it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Shown {
    pub nick: String,
    pub bare_jid: String,
    pub role: String,
}

impl Shown {
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or(Role::None)
    }
}

impl From<&Occupant> for Shown {
    fn from(occupant: &Occupant) -> Shown {
        Shown {
            nick: occupant.nick.clone(),
            bare_jid: occupant.bare_jid.clone(),
            role: occupant.role.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub full_jid: String,
    /// The client's presence children (show, status, ...) without the MUC `<x>`, each serialised.
    pub presence_payload: Vec<String>,
}

impl Occupant {
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or(Role::None)
    }

    /// Every client session's full JID.
    pub fn full_jids(&self) -> impl Iterator<Item = &str> {
        self.sessions.iter().map(|s| s.full_jid.as_str())
    }

    pub fn load(host: &mut dyn Host, room: &str, nick: &str) -> Result<Option<Occupant>, Fault> {
        match host.get(Tier::Volatile, &keys::occupant(room, nick)) {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The occupant a client session is, if it is in the room.
    pub fn of_session(
        host: &mut dyn Host,
        room: &str,
        full_jid: &str,
    ) -> Result<Option<Occupant>, Fault> {
        match host.get(Tier::Volatile, &keys::session(room, full_jid)) {
            Some(nick) => Occupant::load(host, room, &String::from_utf8(nick)?),
            None => Ok(None),
        }
    }

    pub fn all(host: &mut dyn Host, room: &str) -> Result<Vec<Occupant>, Fault> {
        decode_all(host, room)
    }

    /// The occupants holding these nicknames, as others are shown them.
    pub fn shown_named(
        host: &mut dyn Host,
        room: &str,
        nicks: &[String],
    ) -> Result<Vec<Shown>, Fault> {
        let mut shown = Vec::new();
        for nick in nicks {
            if let Some(bytes) = host.get(Tier::Volatile, &keys::occupant(room, nick)) {
                shown.push(serde_json::from_slice(&bytes)?);
            }
        }
        Ok(shown)
    }

    /// Every occupant as others are shown it.
    pub fn all_shown(host: &mut dyn Host, room: &str) -> Result<Vec<Shown>, Fault> {
        decode_all(host, room)
    }

    /// Stores the occupant and indexes each of its sessions.
    pub fn save(&self, host: &mut dyn Host, room: &str) -> Result<(), Fault> {
        for session in &self.sessions {
            host.put(
                Tier::Volatile,
                &keys::session(room, &session.full_jid),
                self.nick.clone().into_bytes(),
            )?;
        }
        host.put(
            Tier::Volatile,
            &keys::occupant(room, &self.nick),
            serde_json::to_vec(self)?,
        )
    }

    /// Removes the occupant and its session index.
    pub fn remove(&self, host: &mut dyn Host, room: &str) {
        for session in &self.sessions {
            host.delete(Tier::Volatile, &keys::session(room, &session.full_jid));
        }
        host.delete(Tier::Volatile, &keys::occupant(room, &self.nick));
    }
}

fn decode_all<T: for<'de> Deserialize<'de>>(
    host: &mut dyn Host,
    room: &str,
) -> Result<Vec<T>, Fault> {
    host.scan(Tier::Volatile, &keys::occupants(room), None, u32::MAX)
        .into_iter()
        .map(|(_, bytes)| serde_json::from_slice(&bytes).map_err(Fault::from))
        .collect()
}

pub fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Moderator => "moderator",
        Role::Participant => "participant",
        Role::Visitor => "visitor",
        Role::None => "none",
    }
}

/// Every session of these occupants.
pub fn sessions(occupants: &[&Occupant]) -> Vec<String> {
    occupants
        .iter()
        .flat_map(|o| o.full_jids().map(str::to_string))
        .collect()
}
