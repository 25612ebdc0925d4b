//! What an invitation page shows of a room: its name and description, asked of the room itself
//! (a disco#info, XEP-0045 §6.4) through the core, as any client would see them.

use std::time::Duration;

use jid::BareJid;
use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use xmpp_parsers::iq::Iq;

use crate::core_event::CoreEvent;
use crate::inbox::Lane;

/// A page does not wait longer than this for the core (busy, or stopping).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room's name, or its address when it has none.
    pub name: String,
    /// Empty when the room has none.
    pub description: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(RoomInfo),
    /// No such room, or one nobody may see yet (a new room not configured).
    NotFound,
    /// The service could not answer now.
    Unavailable,
}

/// Asks the room `room` for its disco#info through `core`.
pub async fn ask(core: &Lane, room: &BareJid) -> Lookup {
    let query =
        Iq::from_get("web-room-info", DiscoInfoQuery { node: None }).with_to(room.clone().into());
    let (reply, answer) = tokio::sync::oneshot::channel();
    let event = CoreEvent::AskMuc {
        iq: query.into(),
        reply,
    };
    if core.send(event).await.is_err() {
        return Lookup::Unavailable;
    }
    match tokio::time::timeout(ASK_TIMEOUT, answer).await {
        Ok(Ok(Some(answer))) => read(answer),
        _ => Lookup::Unavailable,
    }
}

/// The room's answer: a result, or an error (`item-not-found` for a room that is not there).
fn read(answer: Element) -> Lookup {
    match answer.attr("type") {
        Some("result") => {}
        Some("error") if is_item_not_found(&answer) => return Lookup::NotFound,
        _ => return Lookup::Unavailable,
    }
    let Some(info) = answer
        .children()
        .find(|child| child.is("query", xmpp_parsers::ns::DISCO_INFO))
        .and_then(|query| DiscoInfoResult::try_from(query.clone()).ok())
    else {
        return Lookup::Unavailable;
    };
    let name = info
        .identities
        .iter()
        .find(|identity| identity.category == "conference")
        .and_then(|identity| identity.name.clone())
        .unwrap_or_default();
    let description = info
        .extensions
        .iter()
        .flat_map(|form| &form.fields)
        .find(|field| field.var.as_deref() == Some("muc#roominfo_description"))
        .and_then(|field| field.values.first().cloned())
        .unwrap_or_default();
    Lookup::Found(RoomInfo { name, description })
}

fn is_item_not_found(answer: &Element) -> bool {
    answer
        .get_child("error", xmpp_parsers::ns::DEFAULT_NS)
        .is_some_and(|error| {
            error
                .get_child("item-not-found", xmpp_parsers::ns::XMPP_STANZAS)
                .is_some()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn the_name_and_description_come_from_the_identity_and_the_roominfo_form() {
        let answer = parse(
            "<iq xmlns='jabber:client' type='result' id='web-room-info'>\
             <query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='conference' type='text' name='Tea &amp; talk'/>\
             <feature var='http://jabber.org/protocol/muc'/>\
             <x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roominfo</value></field>\
             <field var='muc#roominfo_description'><value>&lt;b&gt;all welcome</value></field>\
             </x></query></iq>",
        );
        assert_eq!(
            read(answer),
            Lookup::Found(RoomInfo {
                name: "Tea & talk".into(),
                description: "<b>all welcome".into(),
            })
        );
    }

    #[test]
    fn item_not_found_is_no_room_and_other_errors_are_unavailable() {
        let missing = parse(
            "<iq xmlns='jabber:client' type='error' id='web-room-info'>\
             <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        assert_eq!(read(missing), Lookup::NotFound);
        let failed = parse(
            "<iq xmlns='jabber:client' type='error' id='web-room-info'>\
             <error type='cancel'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        assert_eq!(read(failed), Lookup::Unavailable);
    }
}
