//! XEP-0050 (ad-hoc commands) pieces that the service's commands (`adhoc`) and the room's
//! (`features::hats`) share; xmpp-parsers has no type for them yet.

use minidom::rxml::xml_ncname;
use minidom::Element;

pub const NS: &str = "http://jabber.org/protocol/commands";

/// A `<command/>` answer: the node it answers, its session, its status and what it carries (a
/// form, a note).
pub fn response(node: &str, session: &str, status: &str, payload: Option<Element>) -> Element {
    Element::builder("command", NS)
        .attr(xml_ncname!("node").into(), node)
        .attr(xml_ncname!("sessionid").into(), session)
        .attr(xml_ncname!("status").into(), status)
        .append_all(payload)
        .build()
}

/// A `<note type='info'/>` for a completed command.
pub fn info_note(text: String) -> Element {
    Element::builder("note", NS)
        .attr(xml_ncname!("type").into(), "info")
        .append(text)
        .build()
}
