//! Groupchat messages to the room (XEP-0045 §7.4, §8.1): sent to every occupant, the sender
//! included, with the sender's id kept and the room's stanza-id and occupant-id added, and kept
//! in the archive; or, with a subject and no body, a subject change.

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::errors;
use crate::extensions;
use crate::features::{archive, moderated, occupant_id, stable_id, subject};
use crate::host::{Fault, Host, MessageHooks, Tier};
use crate::keys;
use crate::occupant::Occupant;
use crate::room::{Room, Subject};
use crate::service::Inbound;

pub fn handle(host: &mut dyn Host, inbound: &Inbound) -> Result<(), Fault> {
    let room_jid = inbound.to.to_bare().to_string();
    let refuse = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "message", type_, condition, None)
    };
    let Some(mut room) = Room::load(host, &room_jid)? else {
        return refuse(host, ErrorType::Cancel, DefinedCondition::ItemNotFound);
    };
    let Some(sender) = Occupant::of_session(host, &room_jid, &inbound.from.to_string())? else {
        return refuse(host, ErrorType::Modify, DefinedCondition::NotAcceptable);
    };
    if !moderated::has_voice(&sender.role()) {
        return refuse(host, ErrorType::Auth, DefinedCondition::Forbidden);
    }
    let mut message = outgoing(&inbound.element, &room.jid, &sender.nick);
    let changes_subject = subject::is_change(&message);
    if changes_subject {
        if !subject::may_change(&room, &sender.role()) {
            return refuse(host, ErrorType::Auth, DefinedCondition::Forbidden);
        }
        let text = message
            .get_child("subject", ns::JABBER_CLIENT)
            .map(Element::text)
            .unwrap_or_default();
        room.subject = (!text.is_empty()).then(|| Subject {
            text,
            by: sender.nick.clone(),
        });
        room.save(host)?;
    }
    // Only extensions need the occupants, and only some of them; the broadcast needs only the
    // session index.
    let hooks = if changes_subject {
        MessageHooks::None
    } else {
        host.extension_message_hooks(&room.jid)
    };
    let occupants = match hooks {
        MessageHooks::None => None,
        MessageHooks::OccupantsNamed(nicks) => {
            Some(Occupant::shown_named(host, &room.jid, &nicks)?)
        }
        MessageHooks::WithOccupants => Some(Occupant::all_shown(host, &room.jid)?),
    };
    let mut said = Vec::new();
    if let Some(occupants) = occupants {
        match extensions::filter_message(host, &room, occupants, &sender, &mut message)? {
            Ok(saying) => said = saying,
            Err(why) => {
                let (type_, condition) = (ErrorType::Modify, DefinedCondition::PolicyViolation);
                return errors::reply(
                    host,
                    inbound.envelope,
                    "message",
                    type_,
                    condition,
                    Some(&why),
                );
            }
        }
    }
    let stanza_id = host.unique_id();
    stable_id::stamp(&mut message, &room.jid, &stanza_id);
    let id = occupant_id::of(host, &room.jid, &sender)?;
    occupant_id::stamp(&mut message, &id);
    // Serialised once, for the archive and the broadcast.
    let xml = String::from(&message);
    archive::store(host, &room, &message, &xml, Some(&inbound.from.to_string()))?;
    // To every session in the room, from the session index: one crossing whatever the size.
    host.broadcast_to_keys(&xml, Tier::Volatile, &keys::sessions(&room.jid))?;
    extensions::say(host, &room, said)
}

/// The message as the room relays it: from `room/nick`, the client's id and payload kept.
fn outgoing(received: &Element, room: &str, nick: &str) -> Element {
    let mut message = received.clone();
    for attribute in ["to", "from"] {
        message.attrs_mut().remove(&Namespace::NONE, attribute);
    }
    message.set_attr(
        Namespace::NONE,
        xml_ncname!("from").into(),
        format!("{room}/{nick}"),
    );
    message
}
