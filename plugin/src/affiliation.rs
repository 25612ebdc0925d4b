//! Affiliations (XEP-0045 §5.2), stored durably per room and bare JID.

use serde::{Deserialize, Serialize};
use xmpp_parsers::muc::user::Affiliation;

use crate::host::{Fault, Host, Tier};
use crate::keys;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AffiliationRecord {
    /// `owner`, `admin`, `member` or `outcast`; `none` is never stored.
    pub affiliation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub fn get(host: &mut dyn Host, room: &str, bare_jid: &str) -> Result<Affiliation, Fault> {
    let Some(bytes) = host.get(Tier::Durable, &keys::affiliation(room, bare_jid)) else {
        return Ok(Affiliation::None);
    };
    let record: AffiliationRecord = serde_json::from_slice(&bytes)?;
    Ok(record.affiliation.parse()?)
}

pub fn set(
    host: &mut dyn Host,
    room: &str,
    bare_jid: &str,
    affiliation: Affiliation,
) -> Result<(), Fault> {
    let key = keys::affiliation(room, bare_jid);
    if affiliation == Affiliation::None {
        host.delete(Tier::Durable, &key);
        return Ok(());
    }
    let record = AffiliationRecord {
        affiliation: name(&affiliation).to_string(),
        reason: None,
    };
    host.put(Tier::Durable, &key, serde_json::to_vec(&record)?)
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
