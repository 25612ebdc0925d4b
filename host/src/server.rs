//! What the server itself answers in bundled mode (stanzas to its domain or with no `to`):
//! presence reflected to its sender, XMPP ping, an empty roster (for accounts: a guest has
//! none) and disco listing the MUC service. Accounts and registration belong to the client
//! service (`xmpp::c2s` and its layers, `auth`).

use jid::{FullJid, Jid};
use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::iq::{Iq, IqPayload};
use xmpp_parsers::ns;
use xmpp_parsers::roster::Roster;

use crate::stanza_error::{error_reply, DefinedCondition, ErrorType};

const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";

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
        "iq" => iq(domain, muc_domain, from, account, stanza)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn iq(
    domain: &str,
    muc_domain: &str,
    from: &FullJid,
    account: bool,
    stanza: &Element,
) -> Option<Element> {
    let Ok(iq) = Iq::try_from(stanza.clone()) else {
        // Results and errors are never answered (RFC 6120 §8.2.3), however malformed.
        let answered = !matches!(stanza.attr("type"), Some("result" | "error"));
        return answered
            .then(|| error_reply(stanza, ErrorType::Modify, DefinedCondition::BadRequest));
    };
    let (header, payload) = iq.split();
    let (kind, request) = match payload {
        IqPayload::Get(request) => ("get", request),
        IqPayload::Set(request) => ("set", request),
        IqPayload::Result(_) | IqPayload::Error(_) => return None,
    };
    let answer: Option<Element> = match (kind, request.name(), request.ns().as_str()) {
        ("get", "ping", ns::PING) => None,
        // The legacy session request (RFC 3921 §3) is offered as optional, yet some clients
        // (Strophe, under Converse.js) send it once bound: it has nothing to do.
        ("set", "session", SESSION_NS) => None,
        // A guest's roster is refused as unsupported, which clients (Converse.js) take for "no
        // roster here" (RFC 6121 §2.1.3 has nothing for a roster-less user).
        ("get", "query", ns::ROSTER) if account => Some(
            Roster {
                ver: None,
                items: Vec::new(),
            }
            .into(),
        ),
        ("get", "query", ns::DISCO_ITEMS) => {
            let Ok(service) = Jid::new(muc_domain) else {
                return Some(error_reply(
                    stanza,
                    ErrorType::Cancel,
                    DefinedCondition::InternalServerError,
                ));
            };
            let items = vec![Item {
                jid: service,
                node: None,
                name: None,
            }];
            Some(
                DiscoItemsResult {
                    node: None,
                    items,
                    rsm: None,
                }
                .into(),
            )
        }
        ("get", "query", ns::DISCO_INFO) => Some(
            DiscoInfoResult {
                node: None,
                identities: vec![Identity {
                    category: "server".into(),
                    type_: "im".into(),
                    lang: None,
                    name: None,
                }],
                features: [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING]
                    .map(String::from)
                    .into(),
                extensions: Vec::new(),
            }
            .into(),
        ),
        _ => {
            return Some(error_reply(
                stanza,
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
            ))
        }
    };
    let server = header.to.or_else(|| Jid::new(domain).ok());
    let result = Iq::Result {
        from: server,
        to: Some(from.clone().into()),
        id: header.id,
        payload: answer,
    };
    Some(result.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(xml: &str) -> Vec<Element> {
        let from: FullJid = "romeo@localhost/phone".parse().unwrap();
        let stanza: Element = xml.parse().unwrap();
        handle("localhost", "conference.localhost", &from, true, &stanza)
    }

    fn result_of(xml: &str) -> Option<Element> {
        let [reply] = <[Element; 1]>::try_from(ask(xml)).expect("one reply");
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
        assert_eq!(reply.attr("to"), Some("romeo@localhost/phone"));
        assert_eq!(reply.attr("from"), Some("localhost"));
        assert_eq!(reply.attr("id"), Some("q"));
        reply.children().next().cloned()
    }

    #[test]
    fn the_server_answers_ping_roster_and_disco_naming_the_muc_service() {
        let get =
            |payload: &str| format!("<iq xmlns='jabber:client' type='get' id='q'>{payload}</iq>");
        assert_eq!(result_of(&get("<ping xmlns='urn:xmpp:ping'/>")), None);
        let roster = result_of(&get("<query xmlns='jabber:iq:roster'/>")).unwrap();
        assert!(Roster::try_from(roster).unwrap().items.is_empty());
        let items = result_of(&get(
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        ));
        let items = DiscoItemsResult::try_from(items.unwrap()).unwrap();
        assert_eq!(items.items[0].jid.to_string(), "conference.localhost");
        let info = result_of(&get(
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        ));
        let info = DiscoInfoResult::try_from(info.unwrap()).unwrap();
        assert_eq!(info.identities[0].category, "server");
        assert!(info.features.contains(ns::PING));
    }

    #[test]
    fn what_the_server_does_not_serve_is_an_error_and_results_are_never_answered() {
        let condition = |xml: &str| {
            let replies = ask(xml);
            let error = replies[0].get_child("error", "jabber:client").unwrap();
            error.children().next().unwrap().name().to_string()
        };
        assert_eq!(
            condition(
                "<iq xmlns='jabber:client' type='get' id='q'><vCard xmlns='vcard-temp'/></iq>"
            ),
            "service-unavailable"
        );
        assert_eq!(
            condition("<iq xmlns='jabber:client' type='set' id='q'><query xmlns='jabber:iq:roster'/></iq>"),
            "service-unavailable"
        );
        assert_eq!(
            condition("<iq xmlns='jabber:client' type='get' id='q'/>"),
            "bad-request"
        );
        assert!(ask("<iq xmlns='jabber:client' type='result' id='q'/>").is_empty());
        assert!(ask("<iq xmlns='jabber:client' type='error' id='q'/>").is_empty());
    }

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

    #[test]
    fn a_session_request_after_binding_is_answered_with_a_result() {
        let from: FullJid = "alice@localhost/web".parse().unwrap();
        let request: Element =
            "<iq xmlns='jabber:client' type='set' id='s' from='alice@localhost/web'>\
             <session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
                .parse()
                .unwrap();
        let replies = handle("localhost", "conference.localhost", &from, true, &request);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].attr("type"), Some("result"));
        assert_eq!(replies[0].attr("id"), Some("s"));
        assert_eq!(replies[0].attr("to"), Some("alice@localhost/web"));
    }
}
