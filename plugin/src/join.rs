//! Entering a room (XEP-0045 §7.2), and creating it when it does not exist (§10.1, the seed).

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::muc::user::{Affiliation, Item, Role, Status};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::affiliation;
use crate::errors;
use crate::features::lock;
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::muc_user;
use crate::occupant::{role_name, Occupant, Session};
use crate::room::Room;
use crate::service::{Inbound, Muc};

pub fn handle_presence(muc: &Muc, host: &mut dyn Host, inbound: &Inbound) -> Result<(), Fault> {
    let room_jid = inbound.to.to_bare().to_string();
    let full_jid = inbound.from.to_string();
    if inbound.envelope.type_.is_some() {
        // Leaving and presence errors belong to the occupant lifecycle (issue 4).
        return Ok(());
    }
    if host
        .get(Tier::Volatile, &keys::session(&room_jid, &full_jid))
        .is_some()
    {
        // Already in the room: a presence update (issue 4).
        return Ok(());
    }
    join(muc, host, inbound, &room_jid)
}

fn join(muc: &Muc, host: &mut dyn Host, inbound: &Inbound, room_jid: &str) -> Result<(), Fault> {
    let bare_jid = inbound.from.to_bare().to_string();
    let nick = inbound.to.resource().map(|r| r.to_string()).unwrap_or_default();
    let (room, created) = match Room::load(host, room_jid)? {
        Some(room) => (room, false),
        None => (create(host, room_jid, &bare_jid)?, true),
    };
    let affiliation = effective_affiliation(muc, host, room_jid, &bare_jid)?;
    if let Some(condition) = lock::refuse_join(&room, &affiliation) {
        return errors::reply(host, inbound.envelope, "presence", ErrorType::Cancel, condition, None);
    }
    if Occupant::load(host, room_jid, &nick)?.is_some_and(|o| o.bare_jid != bare_jid) {
        return errors::reply(
            host,
            inbound.envelope,
            "presence",
            ErrorType::Cancel,
            DefinedCondition::Conflict,
            None,
        );
    }
    let role = role_for(&affiliation);
    let occupant = Occupant {
        nick: nick.clone(),
        bare_jid,
        role: role_name(&role).to_string(),
        sessions: vec![Session {
            full_jid: inbound.from.to_string(),
            presence_payload: presence_payload(&inbound.element),
        }],
    };
    let others = other_occupants(host, room_jid, &nick)?;
    for other in &others {
        send_presence_of(host, room_jid, other, &inbound.from.to_string())?;
    }
    occupant.save(host, room_jid)?;
    let mut statuses = Vec::new();
    if created {
        statuses.push(Status::RoomHasBeenCreated);
    }
    statuses.push(Status::SelfPresence);
    let self_item = item(&occupant, &affiliation, true);
    let mut own = with_to(
        presence(room_jid, &occupant, muc_user::x(self_item, &statuses)),
        &inbound.from.to_string(),
    );
    // The join's id comes back on the self-presence, so the client can match them up.
    if let Some(id) = &inbound.envelope.id {
        own.set_attr(Namespace::NONE, xml_ncname!("id").into(), id.as_str());
    }
    host.send(own)?;
    broadcast_arrival(host, room_jid, &occupant, &affiliation, &others)?;
    send_subject(host, &room, &inbound.from.to_string())
}

/// Creates a locked room with the creator as its owner (XEP-0045 §10.1.1).
fn create(host: &mut dyn Host, room_jid: &str, creator: &str) -> Result<Room, Fault> {
    if host.get(Tier::Durable, keys::LAYOUT).is_none() {
        let version = keys::LAYOUT_VERSION.to_string().into_bytes();
        host.put(Tier::Durable, keys::LAYOUT, version)?;
    }
    let room = Room::new_locked(room_jid);
    room.save(host)?;
    affiliation::set(host, room_jid, creator, Affiliation::Owner)?;
    Ok(room)
}

/// Service administrators are owners of every room.
fn effective_affiliation(
    muc: &Muc,
    host: &mut dyn Host,
    room_jid: &str,
    bare_jid: &str,
) -> Result<Affiliation, Fault> {
    if muc.is_service_admin(bare_jid) {
        return Ok(Affiliation::Owner);
    }
    affiliation::get(host, room_jid, bare_jid)
}

/// The default role for an affiliation (XEP-0045 §5.1.2, unmoderated room).
fn role_for(affiliation: &Affiliation) -> Role {
    match affiliation {
        Affiliation::Owner | Affiliation::Admin => Role::Moderator,
        _ => Role::Participant,
    }
}

fn other_occupants(host: &mut dyn Host, room_jid: &str, nick: &str) -> Result<Vec<Occupant>, Fault> {
    host.scan(Tier::Volatile, &keys::occupants(room_jid), None, u32::MAX)
        .into_iter()
        .map(|(_, bytes)| serde_json::from_slice::<Occupant>(&bytes).map_err(Fault::from))
        .filter(|occupant| occupant.as_ref().map_or(true, |o| o.nick != nick))
        .collect()
}

fn send_presence_of(
    host: &mut dyn Host,
    room_jid: &str,
    occupant: &Occupant,
    to: &str,
) -> Result<(), Fault> {
    let affiliation = affiliation::get(host, room_jid, &occupant.bare_jid)?;
    let x = muc_user::x(item(occupant, &affiliation, false), &[]);
    host.send(with_to(presence(room_jid, occupant, x), to))
}

/// Everyone else learns of the newcomer; only moderators see the real JID (semi-anonymous).
fn broadcast_arrival(
    host: &mut dyn Host,
    room_jid: &str,
    occupant: &Occupant,
    affiliation: &Affiliation,
    others: &[Occupant],
) -> Result<(), Fault> {
    let (moderators, rest): (Vec<&Occupant>, Vec<&Occupant>) =
        others.iter().partition(|o| o.role() == Role::Moderator);
    for (audience, show_jid) in [(moderators, true), (rest, false)] {
        let recipients: Vec<String> = audience
            .iter()
            .flat_map(|o| o.sessions.iter().map(|s| s.full_jid.clone()))
            .collect();
        if recipients.is_empty() {
            continue;
        }
        let x = muc_user::x(item(occupant, affiliation, show_jid), &[]);
        host.broadcast(presence(room_jid, occupant, x), &recipients)?;
    }
    Ok(())
}

/// The subject always follows the join, empty when none is set (XEP-0045 §7.2.15).
fn send_subject(host: &mut dyn Host, room: &Room, to: &str) -> Result<(), Fault> {
    let mut subject = Element::builder("subject", ns::JABBER_CLIENT);
    if let Some(current) = &room.subject {
        subject = subject.append(current.text.as_str());
    }
    let from = match &room.subject {
        Some(current) => format!("{}/{}", room.jid, current.by),
        None => room.jid.clone(),
    };
    let message = Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("type").into(), "groupchat")
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .append(subject.build())
        .build();
    host.send(message)
}

fn item(occupant: &Occupant, affiliation: &Affiliation, show_jid: bool) -> Item {
    let mut item = Item::new(affiliation.clone(), occupant.role());
    if show_jid {
        if let Some(session) = occupant.sessions.first() {
            item.jid = session.full_jid.parse().ok();
        }
    }
    item
}

/// The occupant's presence as the room shows it: its client's payload plus the `muc#user` x.
fn presence(room_jid: &str, occupant: &Occupant, x: Element) -> Element {
    let session = occupant.sessions.first();
    let payload: Vec<Element> = session
        .map(|s| s.presence_payload.iter().filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_default();
    Element::builder("presence", ns::JABBER_CLIENT)
        .attr(xml_ncname!("from").into(), format!("{room_jid}/{}", occupant.nick))
        .append_all(payload)
        .append(x)
        .build()
}

fn with_to(mut stanza: Element, to: &str) -> Element {
    stanza.set_attr(Namespace::NONE, xml_ncname!("to").into(), to);
    stanza
}

/// What a client's presence carries for others (show, status, caps...), without the MUC
/// join element, which is a request to the room and not part of the occupant's presence.
fn presence_payload(presence: &Element) -> Vec<String> {
    presence
        .children()
        .filter(|child| !child.is("x", ns::MUC))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Envelope, StanzaKind};
    use crate::memory_host::MemoryHost;
    use crate::service::Settings;

    fn muc() -> Muc {
        Muc::new(Settings {
            service: "conference.example.org".into(),
            admins: vec![],
        })
    }

    fn join_presence(host: &mut MemoryHost, from: &str, to: &str) {
        let envelope = Envelope {
            kind: StanzaKind::Presence,
            type_: None,
            from: from.into(),
            to: to.into(),
            id: Some("j1".into()),
        };
        let xml = format!(
            "<presence xmlns='jabber:client' from='{from}' to='{to}' id='j1'>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
        );
        muc().handle_stanza(host, &envelope, &xml).unwrap();
    }

    #[test]
    fn first_presence_creates_a_locked_room_owned_by_its_creator() {
        let mut host = MemoryHost::default();
        join_presence(&mut host, "a@example.org/Spark", "room@conference.example.org/clientA");
        let sent = host.take_sent();
        assert_eq!(sent.len(), 2, "self-presence then subject");
        let own = &sent[0];
        assert_eq!(own.attr("from"), Some("room@conference.example.org/clientA"));
        assert_eq!(own.attr("to"), Some("a@example.org/Spark"));
        assert_eq!(own.attr("id"), Some("j1"));
        let x = own.get_child("x", ns::MUC_USER).unwrap();
        let codes: Vec<_> = x.children().filter_map(|c| c.attr("code")).collect();
        assert_eq!(codes, ["201", "110"]);
        let item = x.get_child("item", ns::MUC_USER).unwrap();
        assert_eq!(item.attr("affiliation"), Some("owner"));
        assert_eq!(item.attr("role"), Some("moderator"));
        assert_eq!(item.attr("jid"), Some("a@example.org/Spark"));
        assert!(sent[1].get_child("subject", ns::JABBER_CLIENT).is_some());

        let room = Room::load(&mut host, "room@conference.example.org").unwrap().unwrap();
        assert!(room.locked);
    }

    #[test]
    fn a_locked_room_is_not_found_by_others() {
        let mut host = MemoryHost::default();
        join_presence(&mut host, "a@example.org/Spark", "room@conference.example.org/clientA");
        host.take_sent();
        join_presence(&mut host, "b@example.org/x", "room@conference.example.org/clientB");
        let sent = host.take_sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].attr("type"), Some("error"));
        assert!(sent[0]
            .get_child("error", ns::JABBER_CLIENT)
            .unwrap()
            .has_child("item-not-found", ns::XMPP_STANZAS));
    }
}
