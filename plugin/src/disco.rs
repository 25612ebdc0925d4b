//! Service discovery (XEP-0030, XEP-0045 §6): the service and its public rooms, and each room's
//! identity, features and `muc#roominfo` form.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::ns;

use crate::adhoc;
use crate::features::{self, naming, public};
use crate::form;
use crate::host::{Fault, Host, Tier};
use crate::occupant::Occupant;
use crate::room::Room;

/// Advertised on the service and on every room.
const COMMON: &[&str] = &[
    ns::MUC,
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    "http://jabber.org/protocol/muc#self-ping-optimization",
    "urn:xmpp:ping",
];

/// Advertised on the service only: what it answers beside [`COMMON`].
const SERVICE: &[&str] = &[ns::VERSION, adhoc::NS];

pub fn service_info() -> Element {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("conference", "text", "en", "Chatrooms")],
        features: COMMON
            .iter()
            .chain(SERVICE)
            .map(|f| f.to_string())
            .collect(),
        extensions: Vec::new(),
    }
    .into()
}

/// Public rooms that are open (configured), by scanning the room records of both tiers.
pub fn service_items(host: &mut dyn Host) -> Result<Element, Fault> {
    let mut items = Vec::new();
    for tier in [Tier::Volatile, Tier::Durable] {
        for (key, bytes) in host.scan(tier, "room/", None, u32::MAX) {
            if !key.ends_with("/config") {
                continue;
            }
            let room: Room = serde_json::from_slice(&bytes)?;
            if public::is_public(&room) && !room.locked {
                items.push(Item {
                    jid: room.jid.parse()?,
                    node: None,
                    name: Some(naming::display_name(&room)),
                });
            }
        }
    }
    Ok(DiscoItemsResult {
        node: None,
        items,
        rsm: None,
    }
    .into())
}

pub fn room_info(host: &mut dyn Host, room: &Room) -> Result<Element, Fault> {
    let occupants = Occupant::all(host, &room.jid)?.len();
    let mut info_fields = vec![
        Field::new("muc#roominfo_occupants", FieldType::TextSingle)
            .with_value(&occupants.to_string()),
        Field::new("muc#roominfo_subject", FieldType::TextSingle)
            .with_value(room.subject.as_ref().map_or("", |s| s.text.as_str())),
    ];
    info_fields.extend(features::ALL.iter().flat_map(|f| f.room_info(room)));
    let mut features_list: Vec<String> = COMMON.iter().map(|f| f.to_string()).collect();
    features_list.extend(
        features::ALL
            .iter()
            .flat_map(|f| f.disco_features(room))
            .map(str::to_string),
    );
    let mut info: Element = DiscoInfoResult {
        node: None,
        identities: vec![Identity::new(
            "conference",
            "text",
            "en",
            naming::display_name(room),
        )],
        features: features_list.into_iter().collect(),
        extensions: Vec::new(),
    }
    .into();
    info.append_child(form::element(DataForm::new(
        DataFormType::Result_,
        "http://jabber.org/protocol/muc#roominfo",
        info_fields,
    )));
    Ok(info)
}

/// A room lists no items: occupants are not disclosed this way.
pub fn room_items() -> Element {
    DiscoItemsResult {
        node: None,
        items: Vec::new(),
        rsm: None,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;
    use crate::service::{Muc, Settings};

    const SERVICE_JID: &str = "muc.example";
    const ROOM: &str = "room@muc.example";
    const OWNER: &str = "owner@example.org/desk";

    /// IQ namespaces an XMPP entity may answer, each with a request that a service answering
    /// the namespace does not refuse as unknown.
    const IQ_PROBES: &[(&str, &str, &str)] = &[
        (ns::DISCO_INFO, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>"),
        (ns::DISCO_ITEMS, "get", "<query xmlns='http://jabber.org/protocol/disco#items'/>"),
        (ns::PING, "get", "<ping xmlns='urn:xmpp:ping'/>"),
        (ns::VERSION, "get", "<query xmlns='jabber:iq:version'/>"),
        ("jabber:iq:register", "get", "<query xmlns='jabber:iq:register'/>"),
        (
            adhoc::NS,
            "set",
            "<command xmlns='http://jabber.org/protocol/commands' node='urn:example' action='execute'/>",
        ),
        (crate::owner::NS, "get", "<query xmlns='http://jabber.org/protocol/muc#owner'/>"),
        (
            crate::admin::NS,
            "get",
            "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='owner'/></query>",
        ),
        ("vcard-temp", "get", "<vCard xmlns='vcard-temp'/>"),
        ("jabber:iq:last", "get", "<query xmlns='jabber:iq:last'/>"),
        ("urn:xmpp:time", "get", "<time xmlns='urn:xmpp:time'/>"),
        ("urn:xmpp:mam:2", "set", "<query xmlns='urn:xmpp:mam:2'/>"),
    ];

    /// Answered but not advertised: XEP-0045's own IQ namespaces, which the
    /// `http://jabber.org/protocol/muc` feature stands for (XEP-0045 §6.4 lists no others).
    const PART_OF_MUC: &[&str] = &[crate::owner::NS, crate::admin::NS];

    /// Advertised features that are not IQ namespaces: what the entity is or does.
    fn is_not_an_iq_namespace(feature: &str) -> bool {
        feature.starts_with("muc_")
            || [
                ns::MUC,
                "http://jabber.org/protocol/muc#self-ping-optimization",
                "http://jabber.org/protocol/muc#stable_id",
                "urn:xmpp:occupant-id:0",
                "urn:xmpp:sid:0",
            ]
            .contains(&feature)
    }

    fn iq(type_: &str, to: &str, payload: &str) -> String {
        format!("<iq xmlns='jabber:client' type='{type_}' id='p' from='{OWNER}' to='{to}'>{payload}</iq>")
    }

    /// Whether the IQ's answer shows the namespace is served (anything but "unknown here").
    fn answered(host: &mut MemoryHost, muc: &Muc, to: &str, type_: &str, payload: &str) -> bool {
        let replies = host.exchange(muc, &iq(type_, to, payload));
        assert_eq!(replies.len(), 1, "one answer to {payload}: {replies:?}");
        let unknown = replies[0]
            .get_child("error", ns::JABBER_CLIENT)
            .is_some_and(|error| {
                error.has_child("service-unavailable", ns::XMPP_STANZAS)
                    || error.has_child("feature-not-implemented", ns::XMPP_STANZAS)
            });
        !unknown
    }

    /// Every IQ namespace `to` advertises is answered, and every one it answers is advertised.
    fn assert_features_agree_with_answers(host: &mut MemoryHost, muc: &Muc, to: &str) {
        let info = host.exchange(muc, &iq("get", to, IQ_PROBES[0].2));
        let advertised: Vec<String> = info[0]
            .get_child("query", ns::DISCO_INFO)
            .expect("a disco#info result")
            .children()
            .filter(|c| c.is("feature", ns::DISCO_INFO))
            .filter_map(|c| c.attr("var").map(str::to_string))
            .collect();
        for feature in &advertised {
            if is_not_an_iq_namespace(feature) {
                continue;
            }
            let Some((_, type_, payload)) = IQ_PROBES.iter().find(|(ns, ..)| ns == feature) else {
                panic!("{to} advertises {feature}: add it to IQ_PROBES or to the non-IQ features");
            };
            assert!(
                answered(host, muc, to, type_, payload),
                "{to} advertises {feature} but does not answer it"
            );
        }
        for (namespace, type_, payload) in IQ_PROBES {
            if answered(host, muc, to, type_, payload) && !PART_OF_MUC.contains(namespace) {
                assert!(
                    advertised.iter().any(|f| f == namespace),
                    "{to} answers {namespace} but does not advertise it: {advertised:?}"
                );
            }
        }
    }

    #[test]
    fn a_name_stored_before_its_maximum_keeps_the_room_its_identity() {
        let mut host = MemoryHost::default();
        let mut room = Room::new_locked(ROOM);
        room.locked = false;
        // Over rxml's 8 KiB token limit: the host could not parse an identity named so.
        let long_name = "n".repeat(10_000);
        room.config
            .insert(naming::NAME.var.into(), long_name.clone().into());
        let info = room_info(&mut host, &room).unwrap();
        let reparsed: Element = String::from(&info)
            .parse()
            .expect("the disco#info result parses back");
        let identity = reparsed.get_child("identity", ns::DISCO_INFO).unwrap();
        assert_eq!(identity.attr("name"), Some(&long_name[..200]));
    }

    #[test]
    fn the_service_and_a_room_advertise_what_they_answer() {
        let muc = Muc::new(Settings {
            service: SERVICE_JID.into(),
            admins: Vec::new(),
        });
        let mut host = MemoryHost::default();
        host.exchange(
            &muc,
            &format!(
                "<presence xmlns='jabber:client' from='{OWNER}' to='{ROOM}/owner'>\
                 <x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        );
        host.exchange(
            &muc,
            &iq(
                "set",
                ROOM,
                "<query xmlns='http://jabber.org/protocol/muc#owner'>\
                 <x xmlns='jabber:x:data' type='submit'/></query>",
            ),
        );
        assert_features_agree_with_answers(&mut host, &muc, SERVICE_JID);
        assert_features_agree_with_answers(&mut host, &muc, ROOM);
    }
}
