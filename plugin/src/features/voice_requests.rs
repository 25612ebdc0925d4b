//! Requesting voice (XEP-0045 §7.13, §8.6): a visitor in a moderated room submits the
//! `muc#request` form; every moderator gets an approval form; a moderator who submits it back
//! with `muc#request_allow` on grants the visitor voice.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::muc::user::Role;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::errors;
use crate::event::{Core, RoomFeature, RoomMessage};
use crate::event::{Inbound, Muc};
use crate::host::{Fault, Host};
use crate::occupant::{self, Occupant};
use crate::room::Room;

pub struct VoiceRequests;

impl RoomFeature for VoiceRequests {
    fn claims_room_message(&self, message: &Element) -> bool {
        message
            .get_child("x", ns::DATA_FORMS)
            .is_some_and(is_request)
    }

    fn room_message(&self, host: &mut dyn Host, message: &RoomMessage) -> Result<(), Fault> {
        let Some(form) = message.inbound.element.get_child("x", ns::DATA_FORMS) else {
            return Ok(());
        };
        handle(
            message.muc,
            host,
            message.core,
            message.inbound,
            message.room,
            form,
        )
    }
}

pub const FORM_TYPE: &str = "http://jabber.org/protocol/muc#request";

/// The value of a field of a submitted form.
fn value<'a>(form: &'a DataForm, var: &str) -> Option<&'a str> {
    form.fields
        .iter()
        .find(|f| f.var.as_deref() == Some(var))?
        .values
        .first()
        .map(String::as_str)
}

/// Whether `form` (a `jabber:x:data` element) is a voice request or an answer to one.
pub fn is_request(form: &Element) -> bool {
    form.children().any(|field| {
        field.attr("var") == Some("FORM_TYPE")
            && field.children().any(|v| v.text().trim() == FORM_TYPE)
    })
}

pub fn handle(
    muc: &Muc,
    host: &mut dyn Host,
    core: &dyn Core,
    inbound: &Inbound,
    room: &Room,
    form: &Element,
) -> Result<(), Fault> {
    let refuse = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "message", type_, condition, None)
    };
    let Ok(form) = DataForm::try_from(form.clone()) else {
        return refuse(host, ErrorType::Modify, DefinedCondition::BadRequest);
    };
    let Some(sender) = Occupant::of_session(host, &room.jid, &inbound.from.to_string())? else {
        return refuse(host, ErrorType::Modify, DefinedCondition::NotAcceptable);
    };
    if value(&form, "muc#request_allow").is_some() {
        return approve(muc, host, core, inbound, room, &sender, &form);
    }
    if sender.role() != Role::Visitor {
        // Only visitors lack voice; anyone else asking is a mistake, not worth a moderator's time.
        return refuse(host, ErrorType::Modify, DefinedCondition::NotAcceptable);
    }
    let moderators: Vec<Occupant> = Occupant::all(host, &room.jid)?
        .into_iter()
        .filter(|o| o.role() == Role::Moderator)
        .collect();
    let recipients = occupant::sessions(&moderators.iter().collect::<Vec<_>>());
    if recipients.is_empty() {
        return Ok(());
    }
    host.broadcast(
        approval_form(room, &sender, &inbound.from.to_string()),
        &recipients,
    )
}

/// The form moderators get (XEP-0045 §8.6, example 96).
fn approval_form(room: &Room, visitor: &Occupant, jid: &str) -> Element {
    let field = |var: &str, type_, label: &str, value: &str| {
        let mut field = Field::new(var, type_).with_value(value);
        field.label = Some(label.into());
        field
    };
    let mut form = DataForm::new(
        DataFormType::Form,
        FORM_TYPE,
        vec![
            field(
                "muc#role",
                FieldType::ListSingle,
                "Requested role",
                "participant",
            ),
            field("muc#jid", FieldType::JidSingle, "User ID", jid),
            field(
                "muc#roomnick",
                FieldType::TextSingle,
                "Room Nickname",
                &visitor.nick,
            ),
            field(
                "muc#request_allow",
                FieldType::Boolean,
                "Grant voice to this person?",
                "false",
            ),
        ],
    );
    form.title = Some("Voice request".into());
    form.instructions = Some(format!(
        "{} asks for voice: submit this form to grant it.",
        visitor.nick
    ));
    Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("from").into(), room.jid.as_str())
        .append(crate::form::element(form))
        .build()
}

/// A moderator's answer: granting voice is a role change like any other (§8.4).
fn approve(
    muc: &Muc,
    host: &mut dyn Host,
    core: &dyn Core,
    inbound: &Inbound,
    room: &Room,
    moderator: &Occupant,
    form: &DataForm,
) -> Result<(), Fault> {
    if moderator.role() != Role::Moderator {
        return errors::reply(
            host,
            inbound.envelope,
            "message",
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            None,
        );
    }
    if !matches!(value(form, "muc#request_allow"), Some("1" | "true")) {
        return Ok(());
    }
    let Some(nick) = value(form, "muc#roomnick") else {
        return errors::reply(
            host,
            inbound.envelope,
            "message",
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            None,
        );
    };
    match Occupant::load(host, &room.jid, nick)? {
        Some(visitor) if visitor.role() == Role::Visitor => {
            let affiliation = muc.affiliation(host, &room.jid, &visitor.bare_jid)?;
            let by = Some((moderator.nick.clone(), inbound.from.to_string()));
            core.change_role(
                host,
                room,
                visitor,
                affiliation,
                Role::Participant,
                None,
                by,
            )
        }
        // Gone, or already granted: nothing to do.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_form_is_recognised_by_its_form_type() {
        let request: Element = format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{FORM_TYPE}</value></field>\
             <field var='muc#role'><value>participant</value></field></x>"
        )
        .parse()
        .unwrap();
        assert!(is_request(&request));
        let other: Element = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>"
            .parse()
            .unwrap();
        assert!(!is_request(&other));
    }
}
