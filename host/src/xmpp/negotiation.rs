//! Stream negotiation (RFC 6120 §4-§7): from the client's first stream header to a bound
//! resource, on any transport: STARTTLS where the transport offers it, SASL, XEP-0077 when
//! switched on, then resource binding, or the resumption of an earlier session (XEP-0198). A
//! stream may be opened to the service's domain or, when there are guests, to the guest domain,
//! where only guests log in (ANONYMOUS).

use std::net::IpAddr;

use jid::BareJid;
use minidom::Element;
use xmpp_parsers::bind::BindFeature;
use xmpp_parsers::sm::Nonza;
use xmpp_parsers::stanza_error::DefinedCondition;
use xmpp_parsers::starttls::{Proceed, StartTls};
use xmpp_parsers::stream_error::{DefinedCondition as StreamCondition, StreamError};
use xmpp_parsers::stream_features::StreamFeatures;

use super::authentication::{authenticate, SASL_NS};
use super::binding::{self, bind, session_reply};
use super::c2s::{C2s, Ended, CLIENT_NS, MAX_AUTH_FAILURES};
use super::registration::register;
use super::resumption::Refused;
use super::session::Start;
use super::stream::StreamEvent;
use super::stream_management::{self as sm, TooHigh, SM_NS};
use super::transport::{ClientTransport, StreamSink};
use super::wire::{stream_error, ReadError};
use crate::auth::{offered, AuthPolicy};

const TLS_NS: &str = xmpp_parsers::ns::TLS;

/// Negotiates on `conn` until a resource is bound or a session resumed: the connection and how
/// its session starts.
pub async fn negotiate<T: ClientTransport>(
    c2s: &C2s,
    mut conn: T,
    address: IpAddr,
) -> Result<(T, Start), Ended> {
    let mut user: Option<BareJid> = None;
    let mut failures = 0;
    let mut registered = false;
    'stream: loop {
        let stream_domain = open_stream(c2s, &mut conn, user.is_some()).await?;
        loop {
            let element = match conn.next().await {
                Ok(StreamEvent::Element(element)) => element,
                Ok(StreamEvent::Close) => {
                    conn.close();
                    conn.flush().await?;
                    return Err(Ended::Read(ReadError::Eof));
                }
                Ok(StreamEvent::Open(_)) => unreachable!("one header per stream"),
                Err(ReadError::Stream(error)) => {
                    return Err(refuse(&mut conn, error.condition(), &error.text()).await)
                }
                Err(error) => return Err(Ended::Read(error)),
            };
            let secure = conn.secure();
            let policy = c2s.policy(secure, &stream_domain);
            match (element.name(), element.ns().as_str()) {
                ("starttls", TLS_NS) if conn.offers_starttls() => {
                    conn.element(Proceed);
                    conn.flush().await?;
                    conn = conn.start_tls(c2s.tls.clone()).await?;
                    continue 'stream;
                }
                ("auth", SASL_NS) if user.is_none() => {
                    match authenticate(c2s, &mut conn, &element, &policy, address).await? {
                        Some(jid) => {
                            tracing::info!(%jid, "client authenticated");
                            user = Some(jid);
                            conn.restart();
                            continue 'stream;
                        }
                        None => {
                            failures += 1;
                            if failures >= MAX_AUTH_FAILURES {
                                let text = "too many failed authentication attempts";
                                let condition = StreamCondition::PolicyViolation;
                                return Err(refuse(&mut conn, condition, text).await);
                            }
                        }
                    }
                }
                ("iq", CLIENT_NS) if user.is_none() && may_register(c2s, &policy) => {
                    let reply = register(c2s, &element, &mut registered);
                    conn.element(reply);
                    conn.flush().await?;
                }
                ("iq", CLIENT_NS) if user.is_some() => {
                    let user = user.as_ref().expect("authenticated");
                    match bind(&element, user) {
                        Ok(Some((reply, jid))) => {
                            conn.element(reply);
                            conn.flush().await?;
                            return Ok((conn, Start::Bound(jid)));
                        }
                        Ok(None) => conn.element(session_reply(&element)),
                        Err(reply) => conn.element(reply),
                    }
                    conn.flush().await?;
                }
                (_, SM_NS) if user.is_some() => {
                    let user = user.as_ref().expect("authenticated");
                    if let Some(start) = resume(c2s, &mut conn, element, user).await? {
                        return Ok((conn, start));
                    }
                }
                _ if user.is_none() => {
                    let text = "authenticate first";
                    return Err(refuse(&mut conn, StreamCondition::NotAuthorized, text).await);
                }
                (name, ns) => {
                    let text = format!("<{name} xmlns='{ns}'/> before binding a resource");
                    let condition = StreamCondition::UnsupportedStanzaType;
                    return Err(refuse(&mut conn, condition, &text).await);
                }
            }
        }
    }
}

/// Stream management before a resource is bound: `<resume/>` takes an earlier session of the
/// same account over (XEP-0198 §5); the rest waits for binding (§3).
async fn resume<T: ClientTransport>(
    c2s: &C2s,
    conn: &mut T,
    element: Element,
    user: &BareJid,
) -> Result<Option<Start>, Ended> {
    let failed = match sm::parse(element) {
        Ok(Nonza::Resume(resume)) => {
            match c2s.resumption.claim(&resume.previd.0, user, resume.h).await {
                Ok(parked) => {
                    let handled = parked
                        .managed
                        .counters
                        .lock()
                        .expect("counters lock")
                        .handled();
                    // Flushed by the session's writer with what it sends again: from here on the
                    // session is the writer's to park should the connection fail.
                    conn.element(sm::resumed(&resume.previd.0, handled));
                    return Ok(Some(Start::Resumed(parked)));
                }
                Err(Refused::TooHigh(too_high)) => {
                    return Err(too_high_refusal(conn, too_high).await)
                }
                Err(Refused::Unknown) => sm::failed(DefinedCondition::ItemNotFound, None),
            }
        }
        // `<enable/>` comes after binding (§3); the rest is not the client's to send.
        Ok(_) => sm::failed(DefinedCondition::UnexpectedRequest, None),
        Err(_) => sm::failed(DefinedCondition::BadRequest, None),
    };
    conn.element(failed);
    conn.flush().await?;
    Ok(None)
}

/// A resumption acknowledging more than the session sent: the stream ends (XEP-0198 §4).
async fn too_high_refusal(conn: &mut impl StreamSink, too_high: TooHigh) -> Ended {
    end_with(conn, too_high.error()).await
}

/// Reads the client's stream header and answers with ours and the features that apply; the
/// domain the stream is opened to.
async fn open_stream<T: ClientTransport>(
    c2s: &C2s,
    conn: &mut T,
    authenticated: bool,
) -> Result<String, Ended> {
    let header = match conn.next().await {
        Ok(StreamEvent::Open(header)) => header,
        Ok(_) => unreachable!("a stream starts with its header"),
        Err(ReadError::Stream(error)) => {
            return Err(refuse_before_header(conn, c2s, error.condition(), &error.text()).await)
        }
        Err(error) => return Err(Ended::Read(error)),
    };
    if header.namespace.as_deref() != Some(CLIENT_NS) {
        let text = "this port serves jabber:client streams";
        let condition = StreamCondition::InvalidNamespace;
        return Err(refuse_before_header(conn, c2s, condition, text).await);
    }
    let Some(domain) = header.to.filter(|to| c2s.serves(to)) else {
        let text = format!("this server is {}", c2s.domain);
        let condition = StreamCondition::HostUnknown;
        return Err(refuse_before_header(conn, c2s, condition, &text).await);
    };
    conn.header(&domain, &new_id());
    let policy = c2s.policy(conn.secure(), &domain);
    conn.features(features(c2s, conn, authenticated, &policy));
    conn.flush().await?;
    Ok(domain)
}

/// What the stream offers: TLS first where it is required, then SASL (and XEP-0077), then,
/// authenticated, binding and stream management. The mechanisms are listed in name order (a set
/// in xmpp-parsers): each client picks by its own preference (RFC 6120 §6.3.3).
fn features(
    c2s: &C2s,
    conn: &impl ClientTransport,
    authenticated: bool,
    policy: &AuthPolicy,
) -> StreamFeatures {
    let mut features = StreamFeatures::default();
    if authenticated {
        features.bind = Some(BindFeature { required: false });
        features.others.push(binding::session_feature());
        features.stream_management = Some(sm::feature());
    } else if !c2s.insecure_auth && !conn.secure() && conn.offers_starttls() {
        features.starttls = Some(StartTls { required: true });
    } else {
        if conn.offers_starttls() {
            features.starttls = Some(StartTls { required: false });
        }
        features.sasl_mechanisms = offered(policy)
            .into_iter()
            .map(|mechanism| mechanism.name().to_string())
            .collect();
        features.in_band_registration = may_register(c2s, policy);
    }
    features
}

/// XEP-0077 on this stream: when switched on, under its rules, and never on the guest domain.
fn may_register(c2s: &C2s, policy: &AuthPolicy) -> bool {
    policy.accounts && c2s.may_register(policy.tls)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Ends the stream with a stream error.
pub async fn refuse(conn: &mut impl StreamSink, condition: StreamCondition, text: &str) -> Ended {
    end_with(conn, stream_error(condition, text)).await
}

async fn end_with(conn: &mut impl StreamSink, error: StreamError) -> Ended {
    conn.error(error.clone());
    let _ = conn.flush().await;
    let _ = conn.shutdown().await;
    Ended::Refused(error)
}

/// As [`refuse`], when our header is not sent yet: RFC 6120 §4.9.1.2 wants one first.
async fn refuse_before_header(
    conn: &mut impl StreamSink,
    c2s: &C2s,
    condition: StreamCondition,
    text: &str,
) -> Ended {
    conn.header(&c2s.domain, &new_id());
    refuse(conn, condition, text).await
}
