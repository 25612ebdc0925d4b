//! The owner's `muc#owner` queries (XEP-0045 §10): the configuration form, submitting or
//! cancelling it, and destroying the room.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::muc::user::{Affiliation, MucUser, Status};
use xmpp_parsers::ns;

pub const NS: &str = "http://jabber.org/protocol/muc#owner";
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::admin;
use crate::config::Invalid;
use crate::destroy;
use crate::errors;
use crate::event::{ConfigSubmit, Inbound, Muc};
use crate::extensions;
use crate::features;
use crate::host::{Fault, Host};
use crate::occupant::Occupant;
use crate::room::{naming, Room};
use crate::rules::members_only;

const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";

pub fn handle(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    query: &Element,
) -> Result<(), Fault> {
    let error = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "iq", type_, condition, None)
    };
    let room_jid = inbound.to.to_bare().to_string();
    let Some(room) = Room::load(host, &room_jid)? else {
        return error(host, ErrorType::Cancel, DefinedCondition::ItemNotFound);
    };
    let bare_jid = inbound.from.to_bare().to_string();
    if muc.affiliation(host, &room_jid, &bare_jid)? != Affiliation::Owner {
        return error(host, ErrorType::Auth, DefinedCondition::Forbidden);
    }
    let kind = inbound.envelope.type_.as_deref();
    let form = query.get_child("x", ns::DATA_FORMS);
    let destroy_request = query.get_child("destroy", NS);
    match (kind, form, destroy_request) {
        (Some("get"), None, None) => {
            let form = config_form(host, &room)?;
            reply(host, inbound, Some(form))
        }
        (Some("set"), Some(form), None) => submit(muc, host, inbound, room, form),
        (Some("set"), None, Some(request)) => {
            destroy::destroy(host, &room, destroy::for_occupants(Some(request)))?;
            reply(host, inbound, None)
        }
        _ => error(host, ErrorType::Modify, DefinedCondition::BadRequest),
    }
}

fn submit(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    room: Room,
    form: &Element,
) -> Result<(), Fault> {
    let refuse = |host: &mut dyn Host, condition| {
        errors::reply(
            host,
            inbound.envelope,
            "iq",
            ErrorType::Modify,
            condition,
            None,
        )
    };
    let Some(form) = crate::form::read_submitted(form) else {
        return refuse(host, DefinedCondition::BadRequest);
    };
    match form.type_ {
        // Cancelling the first configuration abandons the room (XEP-0045 §10.1.2).
        DataFormType::Cancel if room.locked => {
            destroy::destroy(host, &room, destroy::for_occupants(None))?;
            return reply(host, inbound, None);
        }
        DataFormType::Cancel => return reply(host, inbound, None),
        DataFormType::Submit => {}
        _ => return refuse(host, DefinedCondition::BadRequest),
    }
    if form.form_type().is_some_and(|t| t != ROOMCONFIG) {
        return refuse(host, DefinedCondition::BadRequest);
    }
    let before = room.config.clone();
    let before_tier = room.tier();
    let not_acceptable = |host: &mut dyn Host, Invalid(why): Invalid| {
        let (type_, condition) = (ErrorType::Modify, DefinedCondition::NotAcceptable);
        errors::reply(host, inbound.envelope, "iq", type_, condition, Some(&why))
    };
    let config = match configured(&room, &form) {
        Ok(config) => config,
        Err(invalid) => return not_acceptable(host, invalid),
    };
    let configured_room = Room {
        config,
        locked: false,
        ..room.clone()
    };
    let submit = ConfigSubmit {
        room: &configured_room,
        before_tier,
        form: &form,
        core: &admin::Changes,
    };
    if let Err(invalid) = features::validate_config(host, &submit)? {
        return not_acceptable(host, invalid);
    }
    let submitted: Vec<(String, Vec<String>)> = form
        .fields
        .iter()
        .filter_map(|f| Some((f.var.clone()?, f.values.clone())))
        .collect();
    let extensions_changed = match extensions::configure(host, &room, &submitted)? {
        Ok(changed) => changed,
        Err(why) => return not_acceptable(host, Invalid(why)),
    };
    configured_room.save(host)?;
    features::configured(host, &submit)?;
    let room = configured_room;
    reply(host, inbound, None)?;
    if room.config != before || extensions_changed {
        announce_change(host, &room, &before)?;
    }
    remove_non_members(muc, host, &room)
}

/// A room that is (now) members-only keeps only its members: the others leave with 322.
fn remove_non_members(muc: &Muc, host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
    for occupant in Occupant::all(host, &room.jid)? {
        let affiliation = muc.affiliation(host, &room.jid, &occupant.bare_jid)?;
        if !members_only::admits(room, &affiliation) {
            admin::remove(
                host,
                room,
                &occupant,
                affiliation,
                Status::ConfigMembersOnly,
                None,
                None,
            )?;
        }
    }
    Ok(())
}

/// The configuration a submitted form asks for: every known field must parse, or nothing
/// changes. Fields no feature owns are ignored (XEP-0004 lets a service do so).
fn configured(room: &Room, form: &DataForm) -> Result<crate::config::Config, Invalid> {
    let mut config = room.config.clone();
    for field in &form.fields {
        let Some(var) = field.var.as_deref() else {
            continue;
        };
        if let Some(spec) = features::field(var) {
            config.insert(var.to_string(), spec.parse(&field.values)?);
        }
    }
    Ok(config)
}

/// XEP-0045 §10.2.1: occupants hear of a change with 104, and 170-174 where they apply.
fn announce_change(
    host: &mut dyn Host,
    room: &Room,
    before: &crate::config::Config,
) -> Result<(), Fault> {
    let mut statuses = vec![Status::ConfigNonPrivacyRelated];
    statuses.extend(features::change_statuses(before, &room.config));
    let notice = Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("type").into(), "groupchat")
        .attr(xml_ncname!("from").into(), room.jid.as_str())
        .append(Element::from(MucUser::new().with_statuses(statuses)))
        .build();
    let occupants = Occupant::all(host, &room.jid)?;
    let everyone = crate::occupant::sessions(&occupants.iter().collect::<Vec<_>>());
    if everyone.is_empty() {
        return Ok(());
    }
    host.broadcast(notice, &everyone)
}

fn config_form(host: &mut dyn Host, room: &Room) -> Result<Element, Fault> {
    let mut fields = features::form_fields(host, room)?;
    fields.extend(host.extension_form_fields(&room.jid));
    let mut form = DataForm::new(DataFormType::Form, ROOMCONFIG, fields);
    form.title = Some(format!("Configuration of {}", naming::display_name(room)));
    form.instructions = Some(if room.locked {
        "The room is locked until you submit this form; submit it empty to accept the defaults."
            .into()
    } else {
        "Change the room's settings.".into()
    });
    Ok(Element::builder("query", NS)
        .append(crate::form::element(form))
        .build())
}

fn reply(host: &mut dyn Host, inbound: &Inbound, payload: Option<Element>) -> Result<(), Fault> {
    host.send(crate::errors::result(inbound.envelope, payload))
}
