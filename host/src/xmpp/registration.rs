//! XEP-0077 in-band registration before authentication: the form, and account creation (one
//! per connection).

use jid::BareJid;
use minidom::Element;

use super::binding::iq_result;
use super::c2s::C2s;
use crate::stanza_error::{error_reply, DefinedCondition, ErrorType};

const REGISTER_NS: &str = "jabber:iq:register";

/// The reply to the registration `iq`; `registered` says whether this connection already made
/// an account, and is set when it makes one.
pub fn register(c2s: &C2s, iq: &Element, registered: &mut bool) -> Element {
    if iq.attr("to").is_some_and(|to| to != c2s.domain) {
        // Before authentication only the server itself answers.
        return error_reply(iq, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
    }
    let query = iq.get_child("query", REGISTER_NS);
    match (iq.attr("type"), query) {
        (Some("get"), Some(_)) => {
            let form = Element::builder("query", REGISTER_NS)
                .append(
                    Element::builder("instructions", REGISTER_NS)
                        .append("Choose a username and password.")
                        .build(),
                )
                .append(Element::builder("username", REGISTER_NS).build())
                .append(Element::builder("password", REGISTER_NS).build())
                .build();
            iq_result(iq, Some(form))
        }
        (Some("set"), Some(query)) => {
            let field = |name: &str| query.get_child(name, REGISTER_NS).map(Element::text);
            // XEP-0077 §3.1: a missing or empty field is not-acceptable.
            let (Some(username), Some(password)) = (field("username"), field("password")) else {
                return error_reply(iq, ErrorType::Modify, DefinedCondition::NotAcceptable);
            };
            let jid = match BareJid::new(&format!("{username}@{}", c2s.domain)) {
                Ok(jid) if !password.is_empty() && !*registered => jid,
                _ => return error_reply(iq, ErrorType::Modify, DefinedCondition::NotAcceptable),
            };
            // Deriving the SCRAM keys takes milliseconds: not on an async worker's time.
            match tokio::task::block_in_place(|| c2s.accounts.add(&jid, &password)) {
                Ok(()) => {
                    tracing::info!(%jid, "account registered in-band");
                    *registered = true;
                    iq_result(iq, None)
                }
                Err(crate::auth::AccountError::Exists) => {
                    error_reply(iq, ErrorType::Cancel, DefinedCondition::Conflict)
                }
                Err(error) => {
                    tracing::error!(%jid, %error, "registering an account failed");
                    error_reply(iq, ErrorType::Wait, DefinedCondition::InternalServerError)
                }
            }
        }
        _ => error_reply(iq, ErrorType::Cancel, DefinedCondition::ServiceUnavailable),
    }
}
