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

    pub fn load(host: &mut dyn Host, room: &str, nick: &str) -> Result<Option<Occupant>, Fault> {
        match host.get(Tier::Volatile, &keys::occupant(room, nick)) {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
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
}

pub fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Moderator => "moderator",
        Role::Participant => "participant",
        Role::Visitor => "visitor",
        Role::None => "none",
    }
}
