//! What the server itself answers in bundled mode (stanzas to its domain or with no `to`):
//! presence reflected to its sender, XMPP ping, an empty roster (for accounts: a guest has
//! none) and disco listing the MUC service. Accounts and registration belong to the client
//! service (`xmpp::c2s` and its layers, `auth`).

use jid::FullJid;
use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;

use crate::stanza_error::error_reply;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// The replies to one stanza from `from` addressed to the server; `account`: `from` is an
/// account's session, not a guest's.
pub fn handle(
    domain: &str,
    muc_domain: &str,
    from: &FullJid,
    account: bool,
    stanza: &Element,
) -> Vec<Element> {
    match stanza.name() {
        // Broadcast presence goes to the user's contacts (none: the roster is empty) and back
        // to the session itself (RFC 6121 §4.2.2).
        "presence" if stanza.attr("to").is_none() => {
            let mut own = stanza.clone();
            own.set_attr(Namespace::NONE, xml_ncname!("to").into(), from.to_string());
            vec![own]
        }
        "iq" => iq(domain, muc_domain, account, stanza)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn iq(domain: &str, muc_domain: &str, account: bool, stanza: &Element) -> Option<Element> {
    let kind = stanza.attr("type")?;
    if kind == "result" || kind == "error" {
        return None;
    }
    let Some(query) = stanza.children().next() else {
        return Some(error_reply(stanza, "modify", "bad-request"));
    };
    let payload = match (kind, query.name(), query.ns().as_str()) {
        ("get", "ping", "urn:xmpp:ping") => None,
        // A guest's roster is refused as unsupported, which clients (Converse.js) take for "no
        // roster here" (RFC 6121 §2.1.3 has nothing for a roster-less user).
        ("get", "query", "jabber:iq:roster") if account => {
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
    fn an_account_has_an_empty_roster_and_a_guest_none() {
        let from: FullJid = "romeo@localhost/phone".parse().unwrap();
        let roster: Element =
            "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>"
                .parse()
                .unwrap();
        let answer = |account| {
            let replies = handle("localhost", "conference.localhost", &from, account, &roster);
            String::from(&replies[0])
        };
        let own = answer(true);
        assert!(
            own.contains("type='result'") && own.contains("jabber:iq:roster"),
            "{own}"
        );
        let guest = answer(false);
        assert!(
            guest.contains("type='error'") && guest.contains("service-unavailable"),
            "{guest}"
        );
    }
}
