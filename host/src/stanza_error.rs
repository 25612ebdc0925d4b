//! Stanza errors (RFC 6120 §8.3): the error form of a stanza, as every part of the host that
//! answers one builds it.

use minidom::rxml::xml_ncname;
use minidom::Element;

const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// `reply` (an error reply) with a human-readable text in its error.
pub fn with_text(mut reply: Element, text: &str) -> Element {
    if let Some(error) = reply.get_child_mut("error", "jabber:client") {
        error.append_child(Element::builder("text", STANZAS_NS).append(text).build());
    }
    reply
}

/// The error form of `stanza`: addresses swapped, `type='error'`, the condition inside.
pub fn error_reply(stanza: &Element, type_: &str, condition: &str) -> Element {
    let mut reply = Element::builder(stanza.name(), "jabber:client")
        .attr(xml_ncname!("type").into(), "error")
        .attr(xml_ncname!("from").into(), stanza.attr("to"))
        .attr(xml_ncname!("to").into(), stanza.attr("from"))
        .attr(xml_ncname!("id").into(), stanza.attr("id"))
        .build();
    let error = Element::builder("error", "jabber:client")
        .attr(xml_ncname!("type").into(), type_)
        .append(Element::builder(condition, STANZAS_NS).build())
        .build();
    reply.append_child(error);
    reply
}
