//! Room registration and reserved nicknames (XEP-0045 §7.10, §7.12): a user registers a
//! nickname with the `muc#register` form (becoming a member), nobody else may use it, and
//! `x-roomuser-item` tells a user their reserved nickname. Only users with an affiliation may
//! register (strangers get `registration-required`). Admins may reserve one for a user by
//! naming it when they set the affiliation.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::muc::user::Affiliation;
use xmpp_parsers::ns;

use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::affiliation::{self, AffiliationRecord};
use crate::errors;
use crate::event::{Core, RoomFeature, RoomIq};
use crate::event::{Inbound, Muc};
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::occupant::Occupant;
use crate::room::Room;

pub const NS: &str = "jabber:iq:register";
pub const FORM_TYPE: &str = "http://jabber.org/protocol/muc#register";
pub const NICK_FIELD: &str = "muc#register_roomnick";
/// The disco node that answers "what is my reserved nickname?" (XEP-0045 §7.12).
pub const ROOMUSER_NODE: &str = "x-roomuser-item";

/// Every room offers registration (XEP-0045 §7.10), and says so in its disco#info: clients such
/// as Converse.js offer to register a nickname only where it is advertised.
pub struct Registration;

impl RoomFeature for Registration {
    fn disco_features(&self, _room: &Room) -> Vec<&'static str> {
        vec![NS]
    }

    fn room_iq_namespaces(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn room_iq(&self, host: &mut dyn Host, iq: &RoomIq) -> Result<(), Fault> {
        handle(iq.muc, host, iq.core, iq.inbound, iq.room, iq.query)
    }
}

/// The bare JID that reserved `nick`, if anyone did.
pub fn reserved_by(host: &mut dyn Host, room: &str, nick: &str) -> Result<Option<String>, Fault> {
    match host.get(Tier::Durable, &keys::reserved_nick(room, nick)) {
        Some(bytes) => Ok(Some(String::from_utf8(bytes)?)),
        None => Ok(None),
    }
}

/// Every reserved nickname of the room, with the bare JID that reserved it.
pub fn reservations(host: &mut dyn Host, room: &str) -> Result<Vec<(String, String)>, Fault> {
    let prefix = keys::reserved_nick(room, "");
    host.scan(Tier::Durable, &prefix, None, u32::MAX)
        .into_iter()
        .map(|(key, owner)| Ok((key[prefix.len()..].to_string(), String::from_utf8(owner)?)))
        .collect()
}

/// Reserves `nick` for `bare_jid` (releasing any nickname it held), making it a member when it
/// had no affiliation.
pub fn reserve(host: &mut dyn Host, room: &str, bare_jid: &str, nick: &str) -> Result<(), Fault> {
    let mut record =
        affiliation::record(host, room, bare_jid)?.unwrap_or_else(|| AffiliationRecord {
            affiliation: affiliation::name(&Affiliation::Member).into(),
            ..AffiliationRecord::default()
        });
    if let Some(old) = record.nick.take() {
        host.delete(Tier::Durable, &keys::reserved_nick(room, &old));
    }
    record.nick = Some(nick.to_string());
    affiliation::put(host, room, bare_jid, &record)?;
    host.put(
        Tier::Durable,
        &keys::reserved_nick(room, nick),
        bare_jid.as_bytes().to_vec(),
    )
}

/// The registration form (XEP-0045 §7.10, example 68).
pub fn form() -> Element {
    let mut nick = Field::new(NICK_FIELD, FieldType::TextSingle);
    nick.label = Some("Nickname".into());
    nick.required = true;
    let form = DataForm::new(DataFormType::Form, FORM_TYPE, vec![nick]);
    Element::builder("query", NS)
        .append(crate::form::element(form))
        .build()
}

/// The nickname a submitted registration form asks for, if the form is one.
pub fn submitted_nick(query: &Element) -> Option<String> {
    let form = DataForm::try_from(query.get_child("x", ns::DATA_FORMS)?.clone()).ok()?;
    if form.type_ != DataFormType::Submit || form.form_type().is_some_and(|t| t != FORM_TYPE) {
        return None;
    }
    let nick = form
        .fields
        .iter()
        .find(|f| f.var.as_deref() == Some(NICK_FIELD))?
        .values
        .first()?
        .trim()
        .to_string();
    (!nick.is_empty()).then_some(nick)
}

/// The answer to the `x-roomuser-item` query: the user's reserved nickname, if any.
pub fn roomuser_item(nick: Option<String>) -> Element {
    DiscoInfoResult {
        node: Some(ROOMUSER_NODE.into()),
        identities: nick
            .map(|nick| Identity {
                category: "conference".into(),
                type_: "text".into(),
                lang: None,
                name: Some(nick),
            })
            .into_iter()
            .collect(),
        features: Default::default(),
        extensions: Vec::new(),
    }
    .into()
}

/// `jabber:iq:register` to a room: the form, registering a nickname, or cancelling (`<remove/>`).
pub fn handle(
    muc: &Muc,
    host: &mut dyn Host,
    core: &dyn Core,
    inbound: &Inbound,
    room: &Room,
    query: &Element,
) -> Result<(), Fault> {
    let refuse = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "iq", type_, condition, None)
    };
    let bare_jid = inbound.from.to_bare().to_string();
    let occupants: Vec<Occupant> = Occupant::all(host, &room.jid)?
        .into_iter()
        .filter(|o| o.bare_jid == bare_jid)
        .collect();
    // Only users the room already knows may register (as Prosody does by default): a stranger
    // cannot squat a nickname.
    if muc.affiliation(host, &room.jid, &bare_jid)? == Affiliation::None {
        return refuse(
            host,
            ErrorType::Auth,
            DefinedCondition::RegistrationRequired,
        );
    }
    match inbound.envelope.type_.as_deref() {
        Some("get") => host.send(errors::result(inbound.envelope, Some(form()))),
        Some("set") if query.has_child("remove", NS) => {
            let current = muc.affiliation(host, &room.jid, &bare_jid)?;
            if matches!(
                current,
                Affiliation::Owner | Affiliation::Admin | Affiliation::Outcast
            ) {
                // Cancelling a registration is a member's act; owners and admins are changed by owners.
                return refuse(host, ErrorType::Cancel, DefinedCondition::NotAllowed);
            }
            affiliation::set(host, &room.jid, &bare_jid, Affiliation::None, None)?;
            core.announce_affiliation(
                host,
                room,
                &bare_jid,
                occupants,
                Affiliation::None,
                None,
                None,
            )?;
            host.send(errors::result(inbound.envelope, None))
        }
        Some("set") => {
            let Some(nick) = submitted_nick(query) else {
                return refuse(host, ErrorType::Modify, DefinedCondition::NotAcceptable);
            };
            let taken_by_reservation =
                reserved_by(host, &room.jid, &nick)?.is_some_and(|owner| owner != bare_jid);
            let taken_in_room =
                Occupant::load(host, &room.jid, &nick)?.is_some_and(|o| o.bare_jid != bare_jid);
            if taken_by_reservation || taken_in_room {
                return refuse(host, ErrorType::Cancel, DefinedCondition::Conflict);
            }
            if muc.affiliation(host, &room.jid, &bare_jid)? == Affiliation::Outcast {
                return refuse(host, ErrorType::Auth, DefinedCondition::Forbidden);
            }
            reserve(host, &room.jid, &bare_jid, &nick)?;
            let affiliation = muc.affiliation(host, &room.jid, &bare_jid)?;
            for occupant in occupants {
                let role = occupant.role();
                core.change_role(host, room, occupant, affiliation.clone(), role, None, None)?;
            }
            host.send(errors::result(inbound.envelope, None))
        }
        _ => refuse(host, ErrorType::Modify, DefinedCondition::BadRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;

    #[test]
    fn a_reservation_makes_a_member_and_moves_with_the_user() {
        let mut host = MemoryHost::default();
        reserve(&mut host, "r@muc.example", "j@example.org", "Juliet").unwrap();
        assert_eq!(
            reserved_by(&mut host, "r@muc.example", "Juliet")
                .unwrap()
                .as_deref(),
            Some("j@example.org")
        );
        assert_eq!(
            affiliation::get(&mut host, "r@muc.example", "j@example.org").unwrap(),
            Affiliation::Member
        );
        reserve(&mut host, "r@muc.example", "j@example.org", "Jules").unwrap();
        assert_eq!(
            reserved_by(&mut host, "r@muc.example", "Juliet").unwrap(),
            None
        );
        affiliation::set(
            &mut host,
            "r@muc.example",
            "j@example.org",
            Affiliation::None,
            None,
        )
        .unwrap();
        assert_eq!(
            reserved_by(&mut host, "r@muc.example", "Jules").unwrap(),
            None,
            "none forgets the nickname"
        );
    }

    #[test]
    fn the_form_round_trips() {
        let query: Element = format!(
            "<query xmlns='{NS}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>{FORM_TYPE}</value></field>\
             <field var='{NICK_FIELD}'><value>Juliet</value></field></x></query>"
        )
        .parse()
        .unwrap();
        assert_eq!(submitted_nick(&query).as_deref(), Some("Juliet"));
        let field = form()
            .get_child("x", ns::DATA_FORMS)
            .unwrap()
            .children()
            .last()
            .unwrap()
            .clone();
        assert_eq!(field.attr("type"), Some("text-single"));
    }
}
