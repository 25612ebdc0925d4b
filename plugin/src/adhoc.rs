//! Ad-hoc commands on the service (XEP-0050) for service administrators. One so far: destroying
//! rooms, under the node Prosody uses (`http://prosody.im/protocol/muc#destroy`), so operators'
//! tools and Prosody's own tests work unchanged.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::commands;
use crate::destroy;
use crate::errors;
use crate::event::{Inbound, Muc};
use crate::form;
use crate::host::{Fault, Host};
use crate::room::Room;

pub const DESTROY_NODE: &str = "http://prosody.im/protocol/muc#destroy";

pub fn handle(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    command: &Element,
) -> Result<(), Fault> {
    let refuse = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "iq", type_, condition, None)
    };
    if command.attr("node") != Some(DESTROY_NODE) {
        return refuse(host, ErrorType::Cancel, DefinedCondition::ItemNotFound);
    }
    if !muc.is_service_admin(&inbound.from.to_bare().to_string()) {
        return refuse(host, ErrorType::Auth, DefinedCondition::Forbidden);
    }
    let session = command
        .attr("sessionid")
        .map(str::to_string)
        .unwrap_or_else(|| host.unique_id());
    let Some(form) = command.get_child("x", ns::DATA_FORMS) else {
        // First step: ask which rooms.
        let mut rooms = Field::new("rooms", FieldType::JidMulti);
        rooms.label = Some("Rooms to destroy".into());
        rooms.required = true;
        let form = DataForm::new(DataFormType::Form, "", vec![rooms]);
        let reply = reply(&session, "executing", form::element(form));
        return host.send(errors::result(inbound.envelope, Some(reply)));
    };
    // Read the field directly: clients (and Prosody's tests) often omit the form's type.
    let rooms: Vec<String> = form
        .children()
        .filter(|field| field.is("field", ns::DATA_FORMS) && field.attr("var") == Some("rooms"))
        .flat_map(|field| {
            field
                .children()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(Element::text)
        })
        .collect();
    if rooms.is_empty() {
        return refuse(host, ErrorType::Modify, DefinedCondition::BadRequest);
    }
    let mut destroyed = Vec::new();
    for jid in rooms {
        let Ok(jid) = jid::BareJid::new(jid.trim()) else {
            return refuse(host, ErrorType::Modify, DefinedCondition::JidMalformed);
        };
        if let Some(room) = Room::load(host, jid.as_str())? {
            destroy::destroy(host, &room, destroy::for_occupants(None))?;
            destroyed.push(room.jid);
        }
    }
    let note = commands::info_note(format!(
        "The following rooms were destroyed:\n{}",
        destroyed.join("\n")
    ));
    host.send(errors::result(
        inbound.envelope,
        Some(reply(&session, "completed", note)),
    ))
}

fn reply(session: &str, status: &str, payload: Element) -> Element {
    commands::response(DESTROY_NODE, session, status, Some(payload))
}
