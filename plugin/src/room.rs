//! A room's stored record, kept in the tier its persistence asks for, and listed in the
//! service-wide indexes as its publicity and name say. Those three rules live here, with the
//! record they place; their features (`features/persistent.rs`, `public.rs`, `naming.rs`)
//! re-export them and answer the events.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::room_index::{self, IndexEntry};

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
        room_index::room_saved(host, &self.index_entry(), self.tier())
    }

    /// Forgets the room: its record and affiliations in both tiers, and its entries
    /// in the service-wide indexes.
    pub fn delete(&self, host: &mut dyn Host) -> Result<(), Fault> {
        for tier in [Tier::Durable, Tier::Volatile] {
            host.delete_prefix(tier, &keys::everything(&self.jid));
        }
        room_index::room_deleted(host, &self.jid, self.creator.as_deref())
    }

    /// What the service-wide indexes hold of the room.
    fn index_entry(&self) -> IndexEntry {
        IndexEntry {
            jid: self.jid.clone(),
            listed_as: (public::is_public(self) && !self.locked)
                .then(|| naming::display_name(self)),
            creator: self.creator.clone(),
        }
    }
}

/// Makes the service-wide indexes again from the room records ([`room_index::rebuild`]).
pub fn rebuild_indexes(host: &mut dyn Host) -> Result<(), Fault> {
    room_index::rebuild(host, |record| {
        serde_json::from_slice::<Room>(record)
            .map(|room| room.index_entry())
            .map_err(|error| error.to_string())
    })
}

pub mod persistent {
    use super::Room;
    use crate::config::{FieldSpec, Kind};

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
    use super::Room;
    use crate::config::{FieldSpec, Kind};

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
    use super::Room;
    use crate::config::{FieldSpec, Kind};

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
