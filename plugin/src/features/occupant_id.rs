//! Occupant identifiers (XEP-0421): every presence and message from an occupant carries an id
//! that is the same for one real bare JID in one room, different across rooms, and does not
//! reveal the JID (a keyed hash with a secret the service keeps). Ids sent by clients are
//! removed so nobody can impersonate one.

use minidom::rxml::xml_ncname;
use minidom::Element;
use sha2::{Digest, Sha256};

use crate::event::{Groupchat, RoomFeature};
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::occupant::Occupant;
use crate::room::Room;
use crate::xml::retain_children;

pub const NS: &str = "urn:xmpp:occupant-id:0";

/// The id of `bare_jid` in `room`: a keyed hash of both with the service's secret.
pub fn id(host: &mut dyn Host, room: &str, bare_jid: &str) -> Result<String, Fault> {
    let secret = match host.get(Tier::Durable, keys::OCCUPANT_ID_SECRET) {
        Some(secret) => secret,
        None => {
            let secret = format!("{}{}", host.unique_id(), host.unique_id()).into_bytes();
            host.put(Tier::Durable, keys::OCCUPANT_ID_SECRET, secret.clone())?;
            secret
        }
    };
    let mut hash = Sha256::new();
    for part in [&secret[..], room.as_bytes(), b"\0", bare_jid.as_bytes()] {
        hash.update(part);
    }
    // Hashed once per join now, so plain formatting is fast enough.
    Ok(hash.finalize()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// The occupant's id, as kept in its record (or made, for a record that predates that).
pub fn of(host: &mut dyn Host, room: &str, occupant: &Occupant) -> Result<String, Fault> {
    match &occupant.occupant_id {
        Some(id) => Ok(id.clone()),
        None => id(host, room, &occupant.bare_jid),
    }
}

/// Removes client-supplied ids, then adds the room's.
pub fn stamp(stanza: &mut Element, id: &str) {
    retain_children(stanza, |c| !c.is("occupant-id", NS));
    stanza.append_child(
        Element::builder("occupant-id", NS)
            .attr(xml_ncname!("id").into(), id)
            .build(),
    );
}

pub struct OccupantId;

impl RoomFeature for OccupantId {
    fn disco_features(&self, _room: &Room) -> Vec<&'static str> {
        vec![NS]
    }

    fn stamp_groupchat(&self, host: &mut dyn Host, message: &mut Groupchat) -> Result<(), Fault> {
        // What a room extension says comes from no user: it has no occupant id.
        let Some(sender) = message.sender else {
            return Ok(());
        };
        let id = of(host, &message.room.jid, sender.occupant)?;
        stamp(&mut message.message, &id);
        message.occupant_id = Some(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;

    #[test]
    fn stable_per_user_and_room_and_unlinkable_across_rooms() {
        let mut host = MemoryHost::default();
        let a = id(&mut host, "r@muc.example", "juliet@example.org").unwrap();
        assert_eq!(
            a,
            id(&mut host, "r@muc.example", "juliet@example.org").unwrap()
        );
        assert_ne!(
            a,
            id(&mut host, "s@muc.example", "juliet@example.org").unwrap()
        );
        assert_ne!(
            a,
            id(&mut host, "r@muc.example", "romeo@example.org").unwrap()
        );
        assert!(!a.contains("juliet"));
    }

    #[test]
    fn a_record_without_its_id_gets_the_same_one() {
        let mut host = MemoryHost::default();
        let made = id(&mut host, "r@muc.example", "juliet@example.org").unwrap();
        let mut occupant = Occupant {
            nick: "juliet".into(),
            bare_jid: "juliet@example.org".into(),
            role: "participant".into(),
            sessions: Vec::new(),
            occupant_id: None,
        };
        assert_eq!(of(&mut host, "r@muc.example", &occupant).unwrap(), made);
        occupant.occupant_id = Some("kept".into());
        assert_eq!(of(&mut host, "r@muc.example", &occupant).unwrap(), "kept");
        assert_eq!(made.len(), 32);
        assert!(made
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn a_forged_id_is_replaced() {
        let mut message: Element = format!(
            "<message xmlns='jabber:client'><occupant-id xmlns='{NS}' id='forged'/></message>"
        )
        .parse()
        .unwrap();
        stamp(&mut message, "real");
        let ids: Vec<_> = message
            .children()
            .filter(|c| c.is("occupant-id", NS))
            .collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].attr("id"), Some("real"));
    }
}
