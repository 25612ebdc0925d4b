//! Resource binding (RFC 6120 §7) and the legacy session request (RFC 3921 §3), answered once
//! the client has authenticated.

use jid::{BareJid, FullJid};
use minidom::Element;
use xmpp_parsers::bind::{BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;

use crate::stanza_error::{error_reply, DefinedCondition, ErrorType};

const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// The legacy session feature (RFC 3921 §3), offered beside binding for clients that still
/// look for it: optional, nothing to do (draft-cridland-xmpp-session-01).
pub fn session_feature() -> Element {
    Element::builder("session", SESSION_NS)
        .append(Element::builder("optional", SESSION_NS))
        .build()
}

/// The reply and the bound JID, or None for a (legacy) session request, or an error reply.
pub fn bind(iq: &Element, user: &BareJid) -> Result<Option<(Element, FullJid)>, Element> {
    if iq.has_child("session", SESSION_NS) {
        return Ok(None);
    }
    let Some(request) = iq
        .get_child("bind", BIND_NS)
        .filter(|_| iq.attr("type") == Some("set"))
    else {
        return Err(error_reply(
            iq,
            ErrorType::Cancel,
            DefinedCondition::NotAllowed,
        ));
    };
    let Ok(request) = BindQuery::try_from(request.clone()) else {
        return Err(error_reply(
            iq,
            ErrorType::Modify,
            DefinedCondition::BadRequest,
        ));
    };
    let wanted = request
        .resource
        .filter(|resource| !resource.trim().is_empty());
    let resource = wanted.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let Ok(jid) = user.with_resource_str(&resource) else {
        return Err(error_reply(
            iq,
            ErrorType::Modify,
            DefinedCondition::BadRequest,
        ));
    };
    let response = BindResponse { jid: jid.clone() };
    Ok(Some((iq_result(iq, Some(response.into())), jid)))
}

/// The answer to a session request: it has nothing to do.
pub fn session_reply(iq: &Element) -> Element {
    iq_result(iq, None)
}

/// The result answering `iq`, carrying `payload`.
pub fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let id = iq.attr("id").unwrap_or_default().to_string();
    let result = Iq::Result {
        from: None,
        to: None,
        id,
        payload,
    };
    result.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_takes_the_asked_resource_or_makes_one() {
        let user: BareJid = "romeo@localhost".parse().unwrap();
        let iq = |xml: &str| -> Element { xml.parse().unwrap() };
        let asked = iq("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>");
        let (reply, jid) = bind(&asked, &user).unwrap().unwrap();
        assert_eq!(jid.to_string(), "romeo@localhost/phone");
        assert!(String::from(&reply).contains("<jid>romeo@localhost/phone</jid>"));
        let made = iq("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
        let (_, jid) = bind(&made, &user).unwrap().unwrap();
        assert_eq!(jid.resource().as_str().len(), 32);
        let session = iq("<iq xmlns='jabber:client' type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
        assert!(bind(&session, &user).unwrap().is_none());
        let other = iq(
            "<iq xmlns='jabber:client' type='get' id='x'><query xmlns='jabber:iq:roster'/></iq>",
        );
        assert!(String::from(&bind(&other, &user).unwrap_err()).contains("not-allowed"));
    }
}
