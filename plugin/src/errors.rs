//! Stanza errors sent back to whoever sent a stanza the service refuses (RFC 6120 §8.3).

use minidom::rxml::xml_ncname;
use minidom::Element;
use std::collections::BTreeMap;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::host::{Envelope, Fault, Host};

/// Answers `request` with an error of the same kind, from the address it was sent to, keeping
/// its `id`. Errors are never answered (RFC 6120 §8.3.1), so loops cannot start.
pub fn reply(
    host: &mut dyn Host,
    request: &Envelope,
    kind: &str,
    type_: ErrorType,
    condition: DefinedCondition,
    text: Option<&str>,
) -> Result<(), Fault> {
    if request.type_.as_deref() == Some("error") {
        return Ok(());
    }
    let error = StanzaError {
        type_,
        // The room (or the service) names itself as the error's origin (RFC 6120 §8.3.2).
        by: jid::Jid::new(&request.to)
            .ok()
            .map(|to| to.to_bare().into()),
        defined_condition: condition,
        texts: text
            // Every text the service writes is in English.
            .map(|t| BTreeMap::from([("en".to_string(), t.to_string())]))
            .unwrap_or_default(),
        other: None,
    };
    let mut builder = Element::builder(kind, xmpp_parsers::ns::JABBER_CLIENT)
        .attr(xml_ncname!("type").into(), "error")
        .attr(xml_ncname!("from").into(), request.to.as_str())
        .attr(xml_ncname!("to").into(), request.from.as_str());
    if let Some(id) = &request.id {
        builder = builder.attr(xml_ncname!("id").into(), id.as_str());
    }
    host.send(builder.append(Element::from(error)).build())
}

/// The `result` answering an IQ request, with an optional payload.
pub fn result(request: &Envelope, payload: Option<Element>) -> Element {
    let mut builder = Element::builder("iq", xmpp_parsers::ns::JABBER_CLIENT)
        .attr(xml_ncname!("type").into(), "result")
        .attr(xml_ncname!("from").into(), request.to.as_str())
        .attr(xml_ncname!("to").into(), request.from.as_str());
    if let Some(id) = &request.id {
        builder = builder.attr(xml_ncname!("id").into(), id.as_str());
    }
    builder.append_all(payload).build()
}
