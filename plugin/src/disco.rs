//! Service discovery (XEP-0030, XEP-0045 §6): the service and its public rooms, and each room's
//! identity, features and `muc#roominfo` form.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::ns;

use crate::features::{self, naming, public};
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

pub fn service_info() -> Element {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("conference", "text", "en", "Chatrooms")],
        features: COMMON
            .iter()
            .chain([&ns::VERSION])
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
    Ok(DiscoInfoResult {
        node: None,
        identities: vec![Identity::new(
            "conference",
            "text",
            "en",
            naming::display_name(room),
        )],
        features: features_list.into_iter().collect(),
        extensions: vec![DataForm::new(
            DataFormType::Result_,
            "http://jabber.org/protocol/muc#roominfo",
            info_fields,
        )],
    }
    .into())
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
