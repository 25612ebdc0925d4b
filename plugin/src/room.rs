//! A room's stored record, kept in the tier its persistence asks for.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::features::persistent;
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::room_index;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Room {
    /// The room's bare JID, normalised.
    pub jid: String,
    /// A new room stays locked until its owner configures it (XEP-0045 §10.1.1).
    pub locked: bool,
    pub config: Config,
    pub subject: Option<Subject>,
    /// The bare JID of the user who created it (counted against their cap on rooms); absent
    /// for rooms made before layout 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
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

    /// Where the room's record lives (its archive is the host's, and durable).
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

    /// Writes the record in its tier, and the service-wide indexes in step with it.
    pub fn save(&self, host: &mut dyn Host) -> Result<(), Fault> {
        host.put(
            self.tier(),
            &keys::room(&self.jid),
            serde_json::to_vec(self)?,
        )?;
        room_index::room_saved(host, self)
    }

    /// Forgets the room: its record and affiliations in both tiers, and its entries
    /// in the service-wide indexes.
    pub fn delete(&self, host: &mut dyn Host) -> Result<(), Fault> {
        for tier in [Tier::Durable, Tier::Volatile] {
            host.delete_prefix(tier, &keys::everything(&self.jid));
        }
        room_index::room_deleted(host, self)
    }
}
