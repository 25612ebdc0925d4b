//! Stable ids (XEP-0045 §7.4 `muc#stable_id`, XEP-0359): a groupchat message keeps the sender's
//! `id`, and gets a `stanza-id` by the room; any stanza-id claiming to be by the room is the
//! client's forgery and is removed.

use minidom::rxml::xml_ncname;
use minidom::Element;

use crate::event::{Groupchat, RoomFeature};
use crate::host::{Fault, Host};
use crate::room::Room;
use crate::xml::retain_children;

pub const NS: &str = "urn:xmpp:sid:0";

pub fn stamp(message: &mut Element, room: &str, id: &str) {
    retain_children(message, |c| {
        !(c.is("stanza-id", NS) && c.attr("by") == Some(room))
    });
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

    fn stamp_groupchat(&self, _host: &mut dyn Host, message: &mut Groupchat) -> Result<(), Fault> {
        stamp(&mut message.message, &message.room.jid, &message.stanza_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rooms_id_replaces_forgeries_and_others_ids_stay() {
        let mut message: Element = format!(
            "<message xmlns='jabber:client' id='client-id'>\
             <stanza-id xmlns='{NS}' id='forged' by='r@muc.example'/>\
             <stanza-id xmlns='{NS}' id='theirs' by='user@example.org'/></message>"
        )
        .parse()
        .unwrap();
        stamp(&mut message, "r@muc.example", "room-id");
        let ids: Vec<(&str, &str)> = message
            .children()
            .filter(|c| c.is("stanza-id", NS))
            .map(|c| (c.attr("by").unwrap(), c.attr("id").unwrap()))
            .collect();
        assert_eq!(
            ids,
            [("user@example.org", "theirs"), ("r@muc.example", "room-id")]
        );
        assert_eq!(
            message.attr("id"),
            Some("client-id"),
            "the sender's id is kept"
        );
    }
}
