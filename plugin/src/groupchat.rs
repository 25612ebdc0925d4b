//! Groupchat messages to the room (XEP-0045 §7.4, §8.1): sent to every occupant, the sender
//! included, with the sender's id kept. Each goes through the features' pipeline: check (may
//! refuse), the room's extensions, stamp (stanza-id, occupant-id), store (archive, subject),
//! broadcast to the room's sessions.

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::errors;
use crate::event::{Groupchat, Inbound, Sender};
use crate::extensions;
use crate::features::{self, occupant_id, subject};
use crate::host::{Fault, Host, MessageHooks};
use crate::occupant::Occupant;
use crate::room::Room;

pub fn handle(host: &mut dyn Host, inbound: &Inbound) -> Result<(), Fault> {
    let room_jid = inbound.to.to_bare().to_string();
    let refuse = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "message", type_, condition, None)
    };
    let Some(room) = Room::load(host, &room_jid)? else {
        return refuse(host, ErrorType::Cancel, DefinedCondition::ItemNotFound);
    };
    let session = inbound.from.to_string();
    let Some(sender) = Occupant::of_session(host, &room_jid, &session)? else {
        return refuse(host, ErrorType::Modify, DefinedCondition::NotAcceptable);
    };
    if let Some(refusal) = features::check_groupchat(&room, &sender, &inbound.element) {
        let envelope = inbound.envelope;
        let (type_, condition) = (refusal.type_, refusal.condition);
        return errors::reply(host, envelope, "message", type_, condition, refusal.text);
    }
    let sender_id = occupant_id::of(host, &room.jid, &sender)?;
    if let Some((refusal, why)) =
        features::check_groupchat_stored(host, &room, &sender_id, &inbound.element)?
    {
        let envelope = inbound.envelope;
        return errors::reply(
            host,
            envelope,
            "message",
            refusal.type_,
            refusal.condition,
            Some(why),
        );
    }
    let mut message = outgoing(&inbound.element, &room.jid, &sender.nick);
    let changes_subject = subject::is_change(&message);
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
    let mut groupchat = Groupchat {
        room: &room,
        sender: Some(Sender {
            occupant: &sender,
            session: &session,
        }),
        stanza_id: host.unique_id(),
        occupant_id: None,
        changes_subject,
        message,
        xml: String::new(),
    };
    features::relay_groupchat(host, &mut groupchat)?;
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
