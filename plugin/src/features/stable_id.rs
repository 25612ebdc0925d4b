//! Stable ids (XEP-0045 §7.4 `muc#stable_id`, XEP-0359): a groupchat message keeps the sender's
//! `id`, and gets a `stanza-id` by the room; any stanza-id claiming to be by the room is the
//! client's forgery and is removed.

use minidom::rxml::xml_ncname;
use minidom::Element;

use super::RoomFeature;
use crate::room::Room;
use crate::xml::retain_children;

pub const NS: &str = "urn:xmpp:sid:0";

pub fn stamp(message: &mut Element, room: &str, id: &str) {
    retain_children(message, |c| !(c.is("stanza-id", NS) && c.attr("by") == Some(room)));
    message.append_child(
        Element::builder("stanza-id", NS)
            .attr(xml_ncname!("id").into(), id)
            .attr(xml_ncname!("by").into(), room)
            .build(),
    );
}

pub struct StableId;

impl RoomFeature for StableId {
    fn disco_features(&self, _room: &Room) -> Vec<&'static str> {
        vec!["http://jabber.org/protocol/muc#stable_id", NS]
    }
}
