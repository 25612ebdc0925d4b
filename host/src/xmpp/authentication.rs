//! One SASL exchange on a client stream (RFC 6120 §6.4), with the throttle against password
//! guessing; the mechanisms themselves are `auth::sasl`'s.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jid::BareJid;
use minidom::Element;
use xmpp_parsers::sasl::{Challenge, Failure, Success};

use super::c2s::{C2s, Ended};
use super::stream::StreamEvent;
use super::transport::{EventSource, StreamSink};
use super::wire::ReadError;
use crate::auth::{AuthPolicy, SaslExchange, SaslFailure, Step};

pub const SASL_NS: &str = xmpp_parsers::ns::SASL;

/// Runs the exchange `auth` starts under the stream's `policy`; the authenticated JID (an
/// account's, or a guest's made for this session), or None after a failure.
pub async fn authenticate(
    c2s: &C2s,
    conn: &mut (impl EventSource + StreamSink),
    auth: &Element,
    policy: &AuthPolicy,
    address: IpAddr,
) -> Result<Option<BareJid>, Ended> {
    if !policy.tls && !policy.insecure {
        send_failure(conn, SaslFailure::EncryptionRequired).await?;
        return Ok(None);
    }
    let Ok(initial) = decode_sasl(&auth.text()) else {
        send_failure(conn, SaslFailure::IncorrectEncoding).await?;
        return Ok(None);
    };
    let mechanism = auth.attr("mechanism").unwrap_or_default();
    // PLAIN derives keys to compare (milliseconds): not on an async worker's time.
    let (mut exchange, mut step) = tokio::task::block_in_place(|| {
        SaslExchange::start(mechanism, initial.as_deref(), policy, &c2s.accounts)
    });
    loop {
        if let Err(wait) = throttled(c2s, &step, exchange.account(), address) {
            send_locked_out(conn, wait).await?;
            return Ok(None);
        }
        match step {
            Step::Success {
                jid,
                additional_data,
            } => {
                let data = additional_data.unwrap_or_default();
                conn.element(Success { data });
                conn.flush().await?;
                return Ok(Some(jid));
            }
            Step::Failure(failure) => {
                send_failure(conn, failure).await?;
                return Ok(None);
            }
            Step::Challenge(data) => {
                conn.element(Challenge { data });
                conn.flush().await?;
            }
        }
        let reply = match conn.next().await {
            Ok(StreamEvent::Element(reply)) => reply,
            Ok(_) => return Err(Ended::Read(ReadError::Eof)),
            Err(error) => return Err(Ended::Read(error)),
        };
        step = match (reply.name(), reply.ns().as_str()) {
            ("response", SASL_NS) => match decode_sasl(&reply.text()) {
                Ok(data) => tokio::task::block_in_place(|| {
                    exchange.respond(&data.unwrap_or_default(), &c2s.accounts)
                }),
                Err(_) => Step::Failure(SaslFailure::IncorrectEncoding),
            },
            ("abort", SASL_NS) => Step::Failure(SaslFailure::Aborted),
            _ => Step::Failure(SaslFailure::MalformedRequest),
        };
    }
}

/// Lets an exchange's outcome out, counting it, or the lockout to answer instead. While the
/// account or the address is locked out, a right password and a wrong one alike are refused
/// (and not counted), so that guessing on tells nothing.
fn throttled(
    c2s: &C2s,
    step: &Step,
    account: Option<&BareJid>,
    address: IpAddr,
) -> Result<(), Duration> {
    let now = Instant::now();
    match step {
        Step::Success { jid, .. } => {
            if let Some(wait) = c2s.auth_throttle.wait(address, Some(jid), now) {
                return Err(wait);
            }
            c2s.auth_throttle.succeeded(jid);
        }
        Step::Failure(SaslFailure::NotAuthorized) => {
            if let Some(wait) = c2s.auth_throttle.wait(address, account, now) {
                return Err(wait);
            }
            c2s.auth_throttle.failed(address, account, now);
        }
        Step::Failure(_) | Step::Challenge(_) => {}
    }
    Ok(())
}

/// SASL payloads are base64, with `=` for an empty one and nothing for none (RFC 6120 §6.4.2).
fn decode_sasl(text: &str) -> Result<Option<Vec<u8>>, base64::DecodeError> {
    match text.trim() {
        "" => Ok(None),
        "=" => Ok(Some(Vec::new())),
        text => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Some),
    }
}

async fn send_failure(conn: &mut impl StreamSink, failure: SaslFailure) -> std::io::Result<()> {
    conn.element(Failure {
        defined_condition: failure.condition(),
        texts: BTreeMap::new(),
    });
    conn.flush().await
}

/// `temporary-auth-failure` (RFC 6120 §6.5.11), saying when to try again.
async fn send_locked_out(conn: &mut impl StreamSink, wait: Duration) -> std::io::Result<()> {
    let seconds = wait.as_secs_f64().ceil();
    let text = format!("too many failed authentication attempts: try again in {seconds} s");
    conn.element(Failure {
        defined_condition: SaslFailure::TemporaryAuthFailure.condition(),
        texts: BTreeMap::from([("en".to_string(), text)]),
    });
    conn.flush().await
}
