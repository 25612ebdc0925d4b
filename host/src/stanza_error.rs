//! Stanza errors (RFC 6120 §8.3): the error form of a stanza, as every part of the host that
//! answers one builds it, with xmpp-parsers' error element.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

pub use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

/// The error form of `stanza`: addresses swapped, `type='error'`, the condition inside.
pub fn error_reply(stanza: &Element, type_: ErrorType, condition: DefinedCondition) -> Element {
    error_reply_saying(stanza, type_, condition, None)
}

/// As [`error_reply`], with a human-readable text in the error when given.
pub fn error_reply_saying(
    stanza: &Element,
    type_: ErrorType,
    condition: DefinedCondition,
    text: Option<&str>,
) -> Element {
    let error = StanzaError {
        type_,
        by: None,
        defined_condition: condition,
        // No language tag: the texts are the service's own, in English.
        texts: text
            .map(|text| (String::new(), text.to_string()))
            .into_iter()
            .collect(),
        other: None,
    };
    Element::builder(stanza.name(), "jabber:client")
        .attr(xml_ncname!("type").into(), "error")
        .attr(xml_ncname!("from").into(), stanza.attr("to"))
        .attr(xml_ncname!("to").into(), stanza.attr("from"))
        .attr(xml_ncname!("id").into(), stanza.attr("id"))
        .append(Element::from(error))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_swaps_the_addresses_and_carries_the_condition_and_text() {
        let stanza: Element =
            "<message xmlns='jabber:client' from='a@x/r' to='room@muc.x' id='7'/>"
                .parse()
                .unwrap();
        let reply = error_reply_saying(
            &stanza,
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            Some("slow down"),
        );
        assert_eq!(
            (
                reply.name(),
                reply.attr("type"),
                reply.attr("from"),
                reply.attr("to"),
                reply.attr("id")
            ),
            (
                "message",
                Some("error"),
                Some("room@muc.x"),
                Some("a@x/r"),
                Some("7")
            )
        );
        let error =
            StanzaError::try_from(reply.get_child("error", "jabber:client").unwrap().clone())
                .unwrap();
        assert_eq!(error.type_, ErrorType::Wait);
        assert_eq!(
            error.defined_condition,
            DefinedCondition::ResourceConstraint
        );
        assert_eq!(error.texts.values().collect::<Vec<_>>(), ["slow down"]);
        let plain = error_reply(&stanza, ErrorType::Cancel, DefinedCondition::ItemNotFound);
        let xml = String::from(&plain);
        assert!(
            xml.contains("<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>")
                || xml.contains("<item-not-found xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/>"),
            "{xml}"
        );
        assert!(!xml.contains("<text"), "{xml}");
    }
}
