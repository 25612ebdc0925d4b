//! What the server itself answers in bundled mode (stanzas to its domain or with no `to`):
//! presence reflected to its sender, XMPP ping, an empty roster and disco listing the MUC
//! service. Accounts and registration belong to the client service (`xmpp::c2s` and its layers, `auth`).

use jid::FullJid;
use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;

use crate::stanza_error::error_reply;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// The replies to one stanza from `from` addressed to the server.
pub fn handle(domain: &str, muc_domain: &str, from: &FullJid, stanza: &Element) -> Vec<Element> {
    match stanza.name() {
        // Broadcast presence goes to the user's contacts (none: the roster is empty) and back
        // to the session itself (RFC 6121 §4.2.2).
        "presence" if stanza.attr("to").is_none() => {
            let mut own = stanza.clone();
            own.set_attr(Namespace::NONE, xml_ncname!("to").into(), from.to_string());
            vec![own]
        }
        "iq" => iq(domain, muc_domain, stanza).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn iq(domain: &str, muc_domain: &str, stanza: &Element) -> Option<Element> {
    let kind = stanza.attr("type")?;
    if kind == "result" || kind == "error" {
        return None;
    }
    let Some(query) = stanza.children().next() else {
        return Some(error_reply(stanza, "modify", "bad-request"));
    };
    let payload = match (kind, query.name(), query.ns().as_str()) {
        ("get", "ping", "urn:xmpp:ping") => None,
        // The legacy session request (RFC 3921 §3) is offered as optional, yet some clients
        // (Strophe, under Converse.js) send it once bound: it has nothing to do.
        ("set", "session", "urn:ietf:params:xml:ns:xmpp-session") => None,
        ("get", "query", "jabber:iq:roster") => {
            Some(Element::builder("query", "jabber:iq:roster").build())
        }
        ("get", "query", DISCO_ITEMS) => Some(
            Element::builder("query", DISCO_ITEMS)
                .append(
                    Element::builder("item", DISCO_ITEMS)
                        .attr(xml_ncname!("jid").into(), muc_domain)
                        .build(),
                )
                .build(),
        ),
        ("get", "query", DISCO_INFO) => Some(
            Element::builder("query", DISCO_INFO)
                .append(
                    Element::builder("identity", DISCO_INFO)
                        .attr(xml_ncname!("category").into(), "server")
                        .attr(xml_ncname!("type").into(), "im")
                        .build(),
                )
                .append(feature(DISCO_INFO))
                .append(feature(DISCO_ITEMS))
                .append(feature("urn:xmpp:ping"))
                .build(),
        ),
        _ => return Some(error_reply(stanza, "cancel", "service-unavailable")),
    };
    let mut result = Element::builder("iq", "jabber:client")
        .attr(xml_ncname!("type").into(), "result")
        .attr(
            xml_ncname!("from").into(),
            stanza.attr("to").unwrap_or(domain),
        )
        .attr(xml_ncname!("to").into(), stanza.attr("from"))
        .attr(xml_ncname!("id").into(), stanza.attr("id"))
        .build();
    if let Some(payload) = payload {
        result.append_child(payload);
    }
    Some(result)
}

fn feature(var: &str) -> Element {
    Element::builder("feature", DISCO_INFO)
        .attr(xml_ncname!("var").into(), var)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_request_after_binding_is_answered_with_a_result() {
        let from: FullJid = "alice@localhost/web".parse().unwrap();
        let request: Element =
            "<iq xmlns='jabber:client' type='set' id='s' from='alice@localhost/web'>\
             <session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
                .parse()
                .unwrap();
        let replies = handle("localhost", "conference.localhost", &from, &request);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].attr("type"), Some("result"));
        assert_eq!(replies[0].attr("id"), Some("s"));
        assert_eq!(replies[0].attr("to"), Some("alice@localhost/web"));
    }
}
