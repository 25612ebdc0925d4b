//! Affiliations (XEP-0045 §5.2), stored durably per room and bare JID, with the reason given
//! and the nickname registered, if any.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xmpp_parsers::muc::user::Affiliation;

use crate::host::{Fault, Host, Tier};
use crate::keys;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AffiliationRecord {
    /// `owner`, `admin`, `member` or `outcast`; `none` is never stored.
    pub affiliation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A nickname reserved for this user in the room (XEP-0045 §7.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
}

impl AffiliationRecord {
    pub fn affiliation(&self) -> Affiliation {
        self.affiliation.parse().unwrap_or(Affiliation::None)
    }
}

pub fn record(
    host: &mut dyn Host,
    room: &str,
    bare_jid: &str,
) -> Result<Option<AffiliationRecord>, Fault> {
    match host.get(Tier::Durable, &keys::affiliation(room, bare_jid)) {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// Stores a whole record (affiliation, reason, reserved nickname) as it is.
pub fn put(
    host: &mut dyn Host,
    room: &str,
    bare_jid: &str,
    record: &AffiliationRecord,
) -> Result<(), Fault> {
    host.put(
        Tier::Durable,
        &keys::affiliation(room, bare_jid),
        serde_json::to_vec(record)?,
    )
}

pub fn get(host: &mut dyn Host, room: &str, bare_jid: &str) -> Result<Affiliation, Fault> {
    Ok(record(host, room, bare_jid)?.map_or(Affiliation::None, |r| r.affiliation()))
}

/// Stores an affiliation; `none` forgets the user (and any reserved nickname).
pub fn set(
    host: &mut dyn Host,
    room: &str,
    bare_jid: &str,
    affiliation: Affiliation,
    reason: Option<String>,
) -> Result<(), Fault> {
    let key = keys::affiliation(room, bare_jid);
    let nick = record(host, room, bare_jid)?.and_then(|r| r.nick);
    if affiliation == Affiliation::None {
        if let Some(nick) = nick {
            host.delete(Tier::Durable, &keys::reserved_nick(room, &nick));
        }
        host.delete(Tier::Durable, &key);
        return Ok(());
    }
    let record = AffiliationRecord {
        affiliation: name(&affiliation).to_string(),
        reason,
        nick,
    };
    host.put(Tier::Durable, &key, serde_json::to_vec(&record)?)
}

/// Every stored affiliation of the room, by bare JID, read in one scan.
pub fn all(host: &mut dyn Host, room: &str) -> Result<BTreeMap<String, Affiliation>, Fault> {
    let prefix = keys::affiliations(room);
    host.scan(Tier::Durable, &prefix, None, u32::MAX)
        .into_iter()
        .map(|(key, bytes)| {
            let record: AffiliationRecord = serde_json::from_slice(&bytes)?;
            Ok((key[prefix.len()..].to_string(), record.affiliation()))
        })
        .collect()
}

/// Every user with `affiliation` in the room, by bare JID.
pub fn list(
    host: &mut dyn Host,
    room: &str,
    affiliation: &Affiliation,
) -> Result<Vec<(String, AffiliationRecord)>, Fault> {
    let prefix = keys::affiliations(room);
    let mut found = Vec::new();
    for (key, bytes) in host.scan(Tier::Durable, &prefix, None, u32::MAX) {
        let record: AffiliationRecord = serde_json::from_slice(&bytes)?;
        if record.affiliation() == *affiliation {
            found.push((key[prefix.len()..].to_string(), record));
        }
    }
    Ok(found)
}

pub fn name(affiliation: &Affiliation) -> &'static str {
    match affiliation {
        Affiliation::Owner => "owner",
        Affiliation::Admin => "admin",
        Affiliation::Member => "member",
        Affiliation::Outcast => "outcast",
        Affiliation::None => "none",
    }
}
