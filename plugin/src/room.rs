//! A room's stored record, kept in the tier its persistence asks for.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::features::persistent;
use crate::host::{Fault, Host, Tier};
use crate::keys;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Room {
    /// The room's bare JID, normalised.
    pub jid: String,
    /// A new room stays locked until its owner configures it (XEP-0045 §10.1.1).
    pub locked: bool,
    pub config: Config,
    pub subject: Option<Subject>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub text: String,
    /// The nickname that set it.
    pub by: String,
}

impl Room {
    pub fn new_locked(jid: &str) -> Room {
        Room {
            jid: jid.to_string(),
            locked: true,
            ..Room::default()
        }
    }

    /// Where the room's record and history live.
    pub fn tier(&self) -> Tier {
        if persistent::is_persistent(self) {
            Tier::Durable
        } else {
            Tier::Volatile
        }
    }

    /// The live record: temporary rooms are looked up first, since they are where traffic is.
    pub fn load(host: &mut dyn Host, jid: &str) -> Result<Option<Room>, Fault> {
        let key = keys::room(jid);
        let stored = host
            .get(Tier::Volatile, &key)
            .or_else(|| host.get(Tier::Durable, &key));
        Ok(match stored {
            Some(bytes) => Some(serde_json::from_slice(&bytes)?),
            None => None,
        })
    }

    pub fn save(&self, host: &mut dyn Host) -> Result<(), Fault> {
        host.put(
            self.tier(),
            &keys::room(&self.jid),
            serde_json::to_vec(self)?,
        )
    }

    /// Forgets the room: its record, history and affiliations in both tiers.
    pub fn delete(&self, host: &mut dyn Host) {
        for tier in [Tier::Durable, Tier::Volatile] {
            host.delete_prefix(tier, &keys::everything(&self.jid));
        }
    }
}
