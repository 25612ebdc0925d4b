//! Private messages between occupants (XEP-0045 §7.5): to `room/nick`, relayed to every session
//! of that occupant from the sender's occupant JID, marked with an empty `muc#user` `<x/>`.

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::errors;
use crate::event::Inbound;
use crate::features::{occupant_id, private_messages};
use crate::host::{Fault, Host};
use crate::occupant::Occupant;
use crate::room::Room;
use crate::xml::retain_children;

pub fn handle(host: &mut dyn Host, inbound: &Inbound, nick: &str) -> Result<(), Fault> {
    let room_jid = inbound.to.to_bare().to_string();
    let refuse = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "message", type_, condition, None)
    };
    let Some(room) = Room::load(host, &room_jid)? else {
        return refuse(host, ErrorType::Cancel, DefinedCondition::ItemNotFound);
    };
    let Some(sender) = Occupant::of_session(host, &room_jid, &inbound.from.to_string())? else {
        return refuse(host, ErrorType::Modify, DefinedCondition::NotAcceptable);
    };
    if !private_messages::may_send(&room, &sender.role()) {
        return refuse(host, ErrorType::Cancel, DefinedCondition::NotAllowed);
    }
    let Some(recipient) = Occupant::load(host, &room_jid, nick)? else {
        return refuse(host, ErrorType::Cancel, DefinedCondition::ItemNotFound);
    };
    let mut message = inbound.element.clone();
    message.attrs_mut().remove(&Namespace::NONE, "to");
    message.set_attr(
        Namespace::NONE,
        xml_ncname!("from").into(),
        format!("{room_jid}/{}", sender.nick),
    );
    retain_children(&mut message, |c| !c.is("x", ns::MUC_USER));
    message.append_child(Element::builder("x", ns::MUC_USER).build());
    let id = occupant_id::of(host, &room_jid, &sender)?;
    occupant_id::stamp(&mut message, &id);
    let sessions: Vec<String> = recipient.full_jids().map(str::to_string).collect();
    host.broadcast(message, &sessions)
}
