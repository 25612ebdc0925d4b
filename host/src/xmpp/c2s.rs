//! The bundled client listener (RFC 6120): stream negotiation (STARTTLS, SASL, resource
//! binding, XEP-0077 registration when switched on), then the session, whose stanzas go to the
//! core thread and whose deliveries come back through a [`SessionSink`].
//!
//! TLS is required before authentication unless the service runs with `--insecure-auth`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::stream::StreamEvent;
use super::throttle::{ReadRate, Throttled};
use super::wire::{stream_error, stream_header, ReadError, Transport, XmlReader};
use crate::auth::{offered, Accounts, AuthPolicy, AuthThrottle, SaslExchange, SaslFailure, Step};
use crate::core_event::CoreEvent;
use crate::inbox::Lanes;
use crate::inbox::CLIENT_LANE;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::router::SessionSink;
use crate::stanza_error::error_reply;

const CLIENT_NS: &str = "jabber:client";
const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";
const REGISTER_NS: &str = "jabber:iq:register";
/// Failed SASL attempts before the stream is closed.
const MAX_AUTH_FAILURES: u32 = 3;
/// Stanzas a session may have waiting for its socket: a client that reads slower than it is
/// written to is disconnected rather than allowed to grow the server's memory.
const MAX_QUEUED_STANZAS: usize = 10_000;
/// Stanzas waiting for a session's socket past which its own stanzas are not read: a client that
/// asks for more than it reads (a flood of archive queries, say) is served as fast as it reads,
/// well before the bound above cuts it off. Far above what a client that keeps up ever has.
const PAUSE_READING_AT: usize = 1_000;
/// A client whose socket takes no bytes for this long is gone, whatever TCP thinks.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Time from connecting to a bound resource.
const NEGOTIATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What every client connection shares.
pub struct C2s {
    pub domain: String,
    pub tls: Arc<ServerConfig>,
    pub accounts: Arc<Accounts>,
    /// Failed authentications by account and by address, to slow password guessing.
    pub auth_throttle: AuthThrottle,
    pub insecure_auth: bool,
    pub registration: bool,
    pub max_stanza_bytes: usize,
    /// How fast each connection's bytes are read (`None`: as fast as they come).
    pub read_rate: Option<ReadRate>,
    /// Each session opens its own lane into the core's inbox.
    pub core: Lanes,
    pub metrics: Arc<Metrics>,
    /// Held by every session's writer: the count of writers still flushing at shutdown.
    pub writers: Arc<()>,
}

/// Accepts clients until the task is dropped.
pub async fn listen(listener: TcpListener, c2s: Arc<C2s>) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                tokio::spawn(c2s.clone().serve(socket, peer));
            }
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "accepting a client failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why negotiation ended without a session.
enum Ended {
    Read(ReadError),
    /// We closed the stream, with this stream error.
    Refused(&'static str, String),
    Io(std::io::Error),
}

impl From<std::io::Error> for Ended {
    fn from(error: std::io::Error) -> Ended {
        Ended::Io(error)
    }
}

type Conn = XmlReader<Box<dyn Transport>>;

impl C2s {
    async fn serve(self: Arc<Self>, socket: TcpStream, peer: SocketAddr) {
        self.metrics.connections_opened.inc();
        let _ = socket.set_nodelay(true);
        tracing::info!(%peer, "client connected");
        // Beneath TLS: every byte the client sends counts, encrypted or not.
        let socket: Box<dyn Transport> = match self.read_rate {
            Some(rate) => Box::new(Throttled::new(socket, rate)),
            None => Box::new(socket),
        };
        let conn = XmlReader::new(socket, self.max_stanza_bytes);
        let negotiated =
            tokio::time::timeout(NEGOTIATION_TIMEOUT, self.negotiate(conn, peer.ip())).await;
        let Ok(negotiated) = negotiated else {
            tracing::info!(%peer, "client took too long to log in; dropped");
            return;
        };
        match negotiated {
            Ok((conn, jid)) => self.session(conn, jid, peer).await,
            Err(Ended::Read(error)) => tracing::info!(%peer, %error, "client left before binding"),
            Err(Ended::Io(error)) => tracing::info!(%peer, %error, "client connection failed"),
            Err(Ended::Refused(condition, text)) => {
                tracing::info!(%peer, condition, text, "client stream refused")
            }
        }
    }

    /// From the first stream header to a bound resource.
    async fn negotiate(&self, mut conn: Conn, address: IpAddr) -> Result<(Conn, FullJid), Ended> {
        let mut tls = false;
        let mut user: Option<BareJid> = None;
        let mut failures = 0;
        let mut registered = false;
        'stream: loop {
            self.open_stream(&mut conn, tls, user.is_some()).await?;
            loop {
                let element = match conn.next().await {
                    Ok(StreamEvent::Element(element)) => element,
                    Ok(StreamEvent::Close) => {
                        conn.get_mut().write_all(b"</stream:stream>").await?;
                        return Err(Ended::Read(ReadError::Eof));
                    }
                    Ok(StreamEvent::Open(_)) => unreachable!("one header per stream"),
                    Err(ReadError::Stream(error)) => {
                        return Err(refuse(&mut conn, error.condition(), &error.text()).await)
                    }
                    Err(error) => return Err(Ended::Read(error)),
                };
                match (element.name(), element.ns().as_str()) {
                    ("starttls", TLS_NS) if !tls => {
                        conn.get_mut()
                            .write_all(format!("<proceed xmlns='{TLS_NS}'/>").as_bytes())
                            .await?;
                        let io = conn.into_inner();
                        let secured = TlsAcceptor::from(self.tls.clone()).accept(io).await?;
                        conn = XmlReader::new(Box::new(secured), self.max_stanza_bytes);
                        tls = true;
                        continue 'stream;
                    }
                    ("auth", SASL_NS) if user.is_none() => {
                        match self.authenticate(&mut conn, &element, tls, address).await? {
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
                                    return Err(refuse(&mut conn, "policy-violation", text).await);
                                }
                            }
                        }
                    }
                    ("iq", CLIENT_NS) if user.is_none() && self.may_register(tls) => {
                        let reply = self.register(&element, &mut registered);
                        write_element(conn.get_mut(), &reply).await?;
                    }
                    ("iq", CLIENT_NS) if user.is_some() => {
                        let user = user.as_ref().expect("authenticated");
                        match bind(&element, user) {
                            Ok(Some((reply, jid))) => {
                                write_element(conn.get_mut(), &reply).await?;
                                return Ok((conn, jid));
                            }
                            Ok(None) => {
                                write_element(conn.get_mut(), &session_reply(&element)).await?
                            }
                            Err(reply) => write_element(conn.get_mut(), &reply).await?,
                        }
                    }
                    _ if user.is_none() => {
                        let text = "authenticate first";
                        return Err(refuse(&mut conn, "not-authorized", text).await);
                    }
                    (name, ns) => {
                        let text = format!("<{name} xmlns='{ns}'/> before binding a resource");
                        return Err(refuse(&mut conn, "unsupported-stanza-type", &text).await);
                    }
                }
            }
        }
    }

    /// Reads the client's stream header and answers with ours and the features that apply.
    async fn open_stream(
        &self,
        conn: &mut Conn,
        tls: bool,
        authenticated: bool,
    ) -> Result<(), Ended> {
        let header = match conn.next().await {
            Ok(StreamEvent::Open(header)) => header,
            Ok(_) => unreachable!("a stream starts with its header"),
            Err(ReadError::Stream(error)) => {
                return Err(refuse_before_header(
                    conn,
                    &self.domain,
                    error.condition(),
                    &error.text(),
                )
                .await)
            }
            Err(error) => return Err(Ended::Read(error)),
        };
        if header.namespace.as_deref() != Some(CLIENT_NS) {
            let text = "this port serves jabber:client streams";
            return Err(refuse_before_header(conn, &self.domain, "invalid-namespace", text).await);
        }
        if header.to.as_deref() != Some(self.domain.as_str()) {
            let text = format!("this server is {}", self.domain);
            return Err(refuse_before_header(conn, &self.domain, "host-unknown", &text).await);
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut reply = stream_header(CLIENT_NS, &self.domain, &id);
        reply.push_str(&self.features(tls, authenticated));
        conn.get_mut().write_all(reply.as_bytes()).await?;
        Ok(())
    }

    fn features(&self, tls: bool, authenticated: bool) -> String {
        let mut features = String::from("<stream:features>");
        if authenticated {
            features.push_str(&format!(
                "<bind xmlns='{BIND_NS}'/><session xmlns='{SESSION_NS}'><optional/></session>"
            ));
        } else if !tls && !self.insecure_auth {
            features.push_str(&format!(
                "<starttls xmlns='{TLS_NS}'><required/></starttls>"
            ));
        } else {
            if !tls {
                features.push_str(&format!("<starttls xmlns='{TLS_NS}'/>"));
            }
            features.push_str(&format!("<mechanisms xmlns='{SASL_NS}'>"));
            for mechanism in offered(&self.policy(tls)) {
                features.push_str(&format!("<mechanism>{}</mechanism>", mechanism.name()));
            }
            features.push_str("</mechanisms>");
            if self.may_register(tls) {
                features.push_str("<register xmlns='http://jabber.org/features/iq-register'/>");
            }
        }
        features.push_str("</stream:features>");
        features
    }

    fn policy(&self, tls: bool) -> AuthPolicy {
        AuthPolicy {
            domain: self.domain.clone(),
            tls,
            insecure: self.insecure_auth,
        }
    }

    fn may_register(&self, tls: bool) -> bool {
        self.registration && (tls || self.insecure_auth)
    }

    /// One SASL exchange (RFC 6120 §6.4); the authenticated JID, or None after a failure.
    async fn authenticate(
        &self,
        conn: &mut Conn,
        auth: &Element,
        tls: bool,
        address: IpAddr,
    ) -> Result<Option<BareJid>, Ended> {
        if !tls && !self.insecure_auth {
            write_sasl_failure(conn, SaslFailure::EncryptionRequired).await?;
            return Ok(None);
        }
        // A locked-out address costs no password check.
        if let Some(wait) = self.auth_throttle.wait(address, None, Instant::now()) {
            write_locked_out(conn, wait).await?;
            return Ok(None);
        }
        let Ok(initial) = decode_sasl(&auth.text()) else {
            write_sasl_failure(conn, SaslFailure::IncorrectEncoding).await?;
            return Ok(None);
        };
        let mechanism = auth.attr("mechanism").unwrap_or_default();
        // PLAIN derives keys to compare (milliseconds): not on an async worker's time.
        let policy = self.policy(tls);
        let (mut exchange, mut step) = tokio::task::block_in_place(|| {
            SaslExchange::start(mechanism, initial.as_deref(), &policy, &self.accounts)
        });
        loop {
            if let Err(wait) = self.throttled(&step, exchange.account(), address) {
                write_locked_out(conn, wait).await?;
                return Ok(None);
            }
            match step {
                Step::Success {
                    jid,
                    additional_data,
                } => {
                    let data = additional_data.map(|d| encode(&d)).unwrap_or_default();
                    let success = format!("<success xmlns='{SASL_NS}'>{data}</success>");
                    conn.get_mut().write_all(success.as_bytes()).await?;
                    return Ok(Some(jid));
                }
                Step::Failure(failure) => {
                    write_sasl_failure(conn, failure).await?;
                    return Ok(None);
                }
                Step::Challenge(data) => {
                    let challenge =
                        format!("<challenge xmlns='{SASL_NS}'>{}</challenge>", encode(&data));
                    conn.get_mut().write_all(challenge.as_bytes()).await?;
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
                        exchange.respond(&data.unwrap_or_default(), &self.accounts)
                    }),
                    Err(_) => Step::Failure(SaslFailure::IncorrectEncoding),
                },
                ("abort", SASL_NS) => Step::Failure(SaslFailure::Aborted),
                _ => Step::Failure(SaslFailure::MalformedRequest),
            };
        }
    }

    /// Lets an exchange's outcome out, counting it, or the lockout to answer instead. While
    /// the account or the address is locked out, a right password and a wrong one alike are
    /// refused (and not counted), so that guessing on tells nothing.
    fn throttled(
        &self,
        step: &Step,
        account: Option<&BareJid>,
        address: IpAddr,
    ) -> Result<(), Duration> {
        let now = Instant::now();
        match step {
            Step::Success { jid, .. } => {
                if let Some(wait) = self.auth_throttle.wait(address, Some(jid), now) {
                    return Err(wait);
                }
                self.auth_throttle.succeeded(jid);
            }
            Step::Failure(SaslFailure::NotAuthorized) => {
                if let Some(wait) = self.auth_throttle.wait(address, account, now) {
                    return Err(wait);
                }
                self.auth_throttle.failed(address, account, now);
            }
            Step::Failure(_) | Step::Challenge(_) => {}
        }
        Ok(())
    }

    /// XEP-0077 before authentication: the form, and account creation (one per connection).
    fn register(&self, iq: &Element, registered: &mut bool) -> Element {
        if iq.attr("to").is_some_and(|to| to != self.domain) {
            // Before authentication only the server itself answers.
            return error_reply(iq, "cancel", "service-unavailable");
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
                let (Some(username), Some(password)) = (field("username"), field("password"))
                else {
                    return error_reply(iq, "modify", "not-acceptable");
                };
                let jid = match BareJid::new(&format!("{username}@{}", self.domain)) {
                    Ok(jid) if !password.is_empty() && !*registered => jid,
                    _ => return error_reply(iq, "modify", "not-acceptable"),
                };
                // Deriving the SCRAM keys takes milliseconds: not on an async worker's time.
                match tokio::task::block_in_place(|| self.accounts.add(&jid, &password)) {
                    Ok(()) => {
                        tracing::info!(%jid, "account registered in-band");
                        *registered = true;
                        iq_result(iq, None)
                    }
                    Err(crate::auth::AccountError::Exists) => error_reply(iq, "cancel", "conflict"),
                    Err(error) => {
                        tracing::error!(%jid, %error, "registering an account failed");
                        error_reply(iq, "wait", "internal-server-error")
                    }
                }
            }
            _ => error_reply(iq, "cancel", "service-unavailable"),
        }
    }

    /// The bound session: stanzas in go to the core; the core's deliveries come back through
    /// the sink to the writer task, which coalesces whatever is queued into one socket write.
    async fn session(&self, conn: Conn, jid: FullJid, peer: SocketAddr) {
        let (mut reader, write_half) = conn.split();
        let (outgoing, queued) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        let (writer_done, mut writer_ended) = oneshot::channel::<()>();
        tokio::spawn(write_loop(
            write_half,
            queued,
            backlog.clone(),
            writer_done,
            self.writers.clone(),
        ));
        static SESSIONS: AtomicU64 = AtomicU64::new(1);
        let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let core = self.core.open(CLIENT_LANE);
        let _ = core
            .send(CoreEvent::Bind {
                jid: jid.clone(),
                session,
                sink: Box::new(ClientSink {
                    queue: outgoing.clone(),
                    backlog: backlog.clone(),
                }),
            })
            .await;
        tracing::info!(%peer, %jid, "session bound");
        let reason = loop {
            let event = tokio::select! {
                event = async {
                    backlog.below(PAUSE_READING_AT).await;
                    reader.next().await
                } => event,
                _ = &mut writer_ended => break "closed by the server".to_string(),
            };
            match event {
                Ok(StreamEvent::Element(stanza)) => match checked(&jid, stanza) {
                    Ok(stanza) => {
                        self.metrics.stanza_in(stanza.name());
                        let _ = core
                            .send(CoreEvent::FromClient {
                                from: jid.clone(),
                                session,
                                stanza,
                            })
                            .await;
                    }
                    Err((condition, text)) => {
                        let _ = outgoing.send(Outgoing::Error(condition, text.clone()));
                        break format!("{condition}: {text}");
                    }
                },
                Ok(StreamEvent::Close) => {
                    let _ = outgoing.send(Outgoing::End);
                    break "closed by the client".to_string();
                }
                Ok(StreamEvent::Open(_)) => unreachable!("one header per stream"),
                Err(ReadError::Stream(error)) => {
                    let _ = outgoing.send(Outgoing::Error(error.condition(), error.text()));
                    break error.to_string();
                }
                Err(error) => break error.to_string(),
            }
        };
        // The rooms it was in hear it leave (RFC 6121 directed presence), clean exit or not.
        let _ = core
            .send(CoreEvent::Unbind {
                jid: jid.clone(),
                session,
            })
            .await;
        tracing::info!(%peer, %jid, reason, "session ended");
    }
}

/// A stanza from a bound client, or the stream error that ends the stream because of it.
fn checked(session: &FullJid, stanza: Element) -> Result<Element, (&'static str, String)> {
    if stanza.ns() != CLIENT_NS || !matches!(stanza.name(), "message" | "presence" | "iq") {
        let text = format!(
            "<{} xmlns='{}'/> is not a stanza",
            stanza.name(),
            stanza.ns()
        );
        return Err(("unsupported-stanza-type", text));
    }
    // RFC 6120 §8.1.2.1: a client may only name itself (its full or bare JID) as the sender.
    if let Some(from) = stanza.attr("from") {
        let allowed = match Jid::new(from) {
            Ok(jid) => jid == session.clone() || jid == session.to_bare(),
            Err(_) => false,
        };
        if !allowed {
            return Err((
                "invalid-from",
                format!("this stream is {session}, not {from}"),
            ));
        }
    }
    Ok(stanza)
}

/// RFC 6120 §7 resource binding: the reply and the bound JID, or None for a (legacy) session
/// request, or an error reply.
fn bind(iq: &Element, user: &BareJid) -> Result<Option<(Element, FullJid)>, Element> {
    if iq.has_child("session", SESSION_NS) {
        return Ok(None);
    }
    let Some(request) = iq
        .get_child("bind", BIND_NS)
        .filter(|_| iq.attr("type") == Some("set"))
    else {
        return Err(error_reply(iq, "cancel", "not-allowed"));
    };
    let wanted = request
        .get_child("resource", BIND_NS)
        .map(Element::text)
        .filter(|resource| !resource.trim().is_empty());
    let resource = wanted.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let Ok(jid) = user.with_resource_str(&resource) else {
        return Err(error_reply(iq, "modify", "bad-request"));
    };
    let payload = Element::builder("bind", BIND_NS)
        .append(
            Element::builder("jid", BIND_NS)
                .append(jid.to_string())
                .build(),
        )
        .build();
    Ok(Some((iq_result(iq, Some(payload)), jid)))
}

fn session_reply(iq: &Element) -> Element {
    iq_result(iq, None)
}

fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let mut reply = Element::builder("iq", CLIENT_NS)
        .attr(minidom::rxml::xml_ncname!("type").into(), "result")
        .attr(minidom::rxml::xml_ncname!("id").into(), iq.attr("id"))
        .build();
    if let Some(payload) = payload {
        reply.append_child(payload);
    }
    reply
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

fn encode(data: &[u8]) -> String {
    match data {
        [] => "=".into(),
        data => base64::engine::general_purpose::STANDARD.encode(data),
    }
}

async fn write_sasl_failure(conn: &mut Conn, failure: SaslFailure) -> std::io::Result<()> {
    let xml = format!(
        "<failure xmlns='{SASL_NS}'><{}/></failure>",
        failure.condition()
    );
    conn.get_mut().write_all(xml.as_bytes()).await
}

/// `temporary-auth-failure` (RFC 6120 §6.5.11), saying when to try again.
async fn write_locked_out(conn: &mut Conn, wait: Duration) -> std::io::Result<()> {
    let seconds = wait.as_secs_f64().ceil();
    let condition = SaslFailure::TemporaryAuthFailure.condition();
    let xml = format!(
        "<failure xmlns='{SASL_NS}'><{condition}/><text xml:lang='en'>too many failed \
         authentication attempts: try again in {seconds} s</text></failure>"
    );
    conn.get_mut().write_all(xml.as_bytes()).await
}

async fn write_element(
    io: &mut (impl AsyncWrite + Unpin),
    element: &Element,
) -> std::io::Result<()> {
    io.write_all(String::from(element).as_bytes()).await
}

/// Ends the stream with a stream error.
async fn refuse(conn: &mut Conn, condition: &'static str, text: &str) -> Ended {
    let _ = conn
        .get_mut()
        .write_all(stream_error(condition, text).as_bytes())
        .await;
    let _ = conn.get_mut().shutdown().await;
    Ended::Refused(condition, text.to_string())
}

/// As [`refuse`], when our header is not sent yet: RFC 6120 §4.9.1.2 wants one first.
async fn refuse_before_header(
    conn: &mut Conn,
    domain: &str,
    condition: &'static str,
    text: &str,
) -> Ended {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let header = stream_header(CLIENT_NS, domain, &id);
    let _ = conn.get_mut().write_all(header.as_bytes()).await;
    refuse(conn, condition, text).await
}

/// What the writer task sends.
enum Outgoing {
    Stanza(Outbound),
    /// A stream error, then the end of the stream.
    Error(&'static str, String),
    /// The end of the stream.
    End,
}

/// Stanzas queued for a session's socket and not yet written.
#[derive(Default)]
struct Backlog {
    waiting: AtomicUsize,
    /// Told each time the writer has written some.
    drained: Notify,
}

impl Backlog {
    /// Counts one more stanza queued; returns how many were waiting before it.
    fn queued(&self) -> usize {
        self.waiting.fetch_add(1, Ordering::Relaxed)
    }

    fn written(&self, stanzas: usize) {
        self.waiting.fetch_sub(stanzas, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    /// Returns once fewer than `limit` stanzas are waiting.
    async fn below(&self, limit: usize) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a write between the two is not missed.
            drained.as_mut().enable();
            if self.waiting.load(Ordering::Relaxed) < limit {
                return;
            }
            drained.await;
        }
    }
}

struct ClientSink {
    queue: mpsc::UnboundedSender<Outgoing>,
    backlog: Arc<Backlog>,
}

impl SessionSink for ClientSink {
    fn deliver(&self, stanza: Outbound) {
        let waiting = self.backlog.queued();
        if waiting < MAX_QUEUED_STANZAS {
            let _ = self.queue.send(Outgoing::Stanza(stanza));
        } else if waiting == MAX_QUEUED_STANZAS {
            tracing::warn!("a client reads too slowly: ending its stream");
            let text = format!("more than {MAX_QUEUED_STANZAS} stanzas waiting for the client");
            let _ = self
                .queue
                .send(Outgoing::Error("resource-constraint", text));
        }
    }

    fn close(&self, condition: &'static str) {
        let _ = self.queue.send(Outgoing::Error(condition, String::new()));
    }
}

/// Writes what the session is sent, everything queued at once, until the stream ends.
async fn write_loop(
    mut io: WriteHalf<Box<dyn Transport>>,
    mut queued: mpsc::UnboundedReceiver<Outgoing>,
    backlog: Arc<Backlog>,
    _done: oneshot::Sender<()>,
    _writers: Arc<()>,
) {
    let mut buffer = String::new();
    while let Some(first) = queued.recv().await {
        let mut ends = false;
        let mut stanzas = 0;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Stanza(stanza) => {
                    stanza.write(&mut buffer);
                    stanzas += 1;
                }
                Outgoing::Error(condition, text) => {
                    buffer.push_str(&stream_error(condition, &text));
                    ends = true;
                }
                Outgoing::End => {
                    buffer.push_str("</stream:stream>");
                    ends = true;
                }
            }
            if !ends && buffer.len() < 64 * 1024 {
                next = queued.try_recv().ok();
            }
        }
        match tokio::time::timeout(WRITE_TIMEOUT, io.write_all(buffer.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("a client took nothing for {WRITE_TIMEOUT:?}: dropping it");
                return;
            }
        }
        backlog.written(stanzas);
        buffer.clear();
        if ends {
            let _ = io.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_stops_reading_is_cut_off_at_the_bound() {
        let (queue, mut queued) = mpsc::unbounded_channel();
        let sink = ClientSink {
            queue,
            backlog: Arc::default(),
        };
        let stanza: Element = "<message xmlns='jabber:client'/>".parse().unwrap();
        for _ in 0..MAX_QUEUED_STANZAS + 5 {
            sink.deliver(stanza.clone().into());
        }
        let mut stanzas = 0;
        let mut errors = Vec::new();
        while let Ok(item) = queued.try_recv() {
            match item {
                Outgoing::Stanza(_) => stanzas += 1,
                Outgoing::Error(condition, _) => errors.push(condition),
                Outgoing::End => panic!("not an end"),
            }
        }
        assert_eq!(stanzas, MAX_QUEUED_STANZAS);
        assert_eq!(errors, ["resource-constraint"]);
    }

    #[tokio::test]
    async fn a_session_with_a_backlog_is_read_again_once_it_drains() {
        let backlog = Arc::new(Backlog::default());
        for _ in 0..PAUSE_READING_AT {
            backlog.queued();
        }
        let reader = tokio::spawn({
            let backlog = backlog.clone();
            async move { backlog.below(PAUSE_READING_AT).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !reader.is_finished(),
            "read while the backlog is at the pause"
        );
        backlog.written(1);
        tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("still paused after the writer drained")
            .unwrap();
    }

    #[test]
    fn a_client_may_name_itself_and_no_one_else() {
        let session: FullJid = "romeo@localhost/phone".parse().unwrap();
        let stanza = |xml: &str| -> Element { xml.parse().unwrap() };
        for ok in [
            "<message xmlns='jabber:client'/>",
            "<message xmlns='jabber:client' from='romeo@localhost/phone'/>",
            "<presence xmlns='jabber:client' from='Romeo@LOCALHOST'/>",
        ] {
            assert!(checked(&session, stanza(ok)).is_ok(), "{ok}");
        }
        for (bad, condition) in [
            (
                "<message xmlns='jabber:client' from='juliet@localhost/phone'/>",
                "invalid-from",
            ),
            (
                "<message xmlns='jabber:client' from='romeo@localhost/other'/>",
                "invalid-from",
            ),
            (
                "<iq xmlns='jabber:client' from='not a jid@'/>",
                "invalid-from",
            ),
            ("<r xmlns='urn:xmpp:sm:3'/>", "unsupported-stanza-type"),
            ("<body xmlns='jabber:client'/>", "unsupported-stanza-type"),
        ] {
            assert_eq!(
                checked(&session, stanza(bad)).unwrap_err().0,
                condition,
                "{bad}"
            );
        }
    }

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
