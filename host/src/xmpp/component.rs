//! Component mode: the MUC domain served as an external component of an existing server
//! (XEP-0114, the Jabber Component Protocol). The link reconnects with backoff when it drops;
//! while it is down, stanzas for the server wait in a bounded queue and leave, in order, once
//! it is back. A batch whose write failed goes back to the front of the queue: at least once.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use xmpp_parsers::component::Handshake;
use xmpp_parsers::stream_error::{DefinedCondition, StreamError};

use super::stream::{StreamEvent, STREAMS_NS};
use super::wire::{prefixed, renamespace, stream_error, ReadError, XmlReader, STREAM_CLOSE};
use crate::core_event::CoreEvent;
use crate::inbox::Lane;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::router::SessionSink;

const COMPONENT_NS: &str = "jabber:component:accept";
const CLIENT_NS: &str = "jabber:client";
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that accepts the connection but never finishes the handshake, or stops reading,
/// is given up on after this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Link {
    /// The server's component port, HOST:PORT.
    pub server: String,
    pub secret: String,
    /// The domain this component serves (the MUC domain).
    pub domain: String,
    /// Stanzas kept while the link is down.
    pub queue_bound: usize,
    pub max_stanza_bytes: usize,
    pub core: Lane,
    pub metrics: Arc<Metrics>,
}

pub enum LinkOut {
    Stanza(Element),
    /// The service is stopping: close the stream.
    Close,
}

/// The router's way to the server.
pub struct LinkSink(pub mpsc::UnboundedSender<LinkOut>);

impl SessionSink for LinkSink {
    fn deliver(&self, stanza: Outbound) {
        // The link writes each stanza in its own namespace: no shared serialisation to use.
        let _ = self.0.send(LinkOut::Stanza(stanza.element()));
    }

    fn close(&self, _condition: DefinedCondition) {
        let _ = self.0.send(LinkOut::Close);
    }
}

/// Stanzas waiting for the link.
struct Backlog {
    stanzas: VecDeque<Element>,
    bound: usize,
    /// Dropped since the bound was last hit, for one log line per outage.
    dropped: u64,
}

impl Backlog {
    fn push(&mut self, stanza: Element) {
        if self.stanzas.len() < self.bound {
            self.stanzas.push_back(stanza);
            return;
        }
        if self.dropped == 0 {
            tracing::error!(
                bound = self.bound,
                "component link queue full: dropping stanzas for the server until it is back"
            );
        }
        self.dropped += 1;
    }
}

enum LinkEnd {
    /// The service is stopping.
    Stopped,
    Lost(String),
}

/// Keeps the link up until the service stops.
pub async fn run(link: Link, mut outbound: mpsc::UnboundedReceiver<LinkOut>) {
    let mut backlog = Backlog {
        stanzas: VecDeque::new(),
        bound: link.queue_bound,
        dropped: 0,
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let connected = {
            let attempt = async {
                tokio::time::timeout(STALL_TIMEOUT, connect(&link))
                    .await
                    .unwrap_or_else(|_| Err("the server did not finish the handshake".into()))
            };
            tokio::pin!(attempt);
            loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    item = outbound.recv() => match item {
                        Some(LinkOut::Stanza(stanza)) => backlog.push(stanza),
                        Some(LinkOut::Close) | None => return,
                    },
                }
            }
        };
        match connected {
            Ok(conn) => {
                backoff = FIRST_BACKOFF;
                if backlog.dropped > 0 {
                    tracing::warn!(
                        dropped = backlog.dropped,
                        "stanzas dropped while the link was down"
                    );
                    backlog.dropped = 0;
                }
                tracing::info!(
                    server = link.server,
                    domain = link.domain,
                    queued = backlog.stanzas.len(),
                    "component link up"
                );
                println!(
                    "muc-host: component connected to {} as {}",
                    link.server, link.domain
                );
                let _ = std::io::stdout().flush();
                match serve(&link, conn, &mut backlog, &mut outbound).await {
                    LinkEnd::Stopped => return,
                    LinkEnd::Lost(reason) => {
                        tracing::warn!(
                            server = link.server,
                            reason,
                            "component link lost; reconnecting"
                        )
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(
                    server = link.server,
                    reason,
                    retry_in_ms = backoff.as_millis() as u64,
                    "component link down"
                )
            }
        }
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                item = outbound.recv() => match item {
                    Some(LinkOut::Stanza(stanza)) => backlog.push(stanza),
                    Some(LinkOut::Close) | None => return,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens the stream and authenticates with the handshake (XEP-0114 §3).
async fn connect(link: &Link) -> Result<XmlReader<TcpStream>, String> {
    let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&link.server))
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|error| error.to_string())?;
    let _ = socket.set_nodelay(true);
    let mut conn = XmlReader::new(socket, link.max_stanza_bytes);
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAMS_NS}' to='{}'>",
        super::wire::escape(&link.domain)
    );
    write(&mut conn, header.as_bytes()).await?;
    let id = match conn.next().await {
        Ok(StreamEvent::Open(header)) => header.id.ok_or("the server's header has no id")?,
        Ok(_) => return Err("no stream header".into()),
        Err(error) => return Err(error.to_string()),
    };
    let handshake = Handshake::from_stream_id_and_password(id, &link.secret);
    write(
        &mut conn,
        String::from(&Element::from(handshake)).as_bytes(),
    )
    .await?;
    match conn.next().await {
        Ok(StreamEvent::Element(reply)) if reply.is("handshake", COMPONENT_NS) => Ok(conn),
        Ok(StreamEvent::Element(error)) if error.name() == "error" && error.ns() == STREAMS_NS => {
            Err(format!(
                "the server refused the handshake: {}",
                describe_stream_error(&error)
            ))
        }
        Ok(_) => Err("the server closed the stream during the handshake".into()),
        Err(error) => Err(error.to_string()),
    }
}

async fn write(conn: &mut XmlReader<TcpStream>, bytes: &[u8]) -> Result<(), String> {
    conn.get_mut()
        .write_all(bytes)
        .await
        .map_err(|error| error.to_string())
}

/// Carries stanzas both ways until the link drops or the service stops.
async fn serve(
    link: &Link,
    conn: XmlReader<TcpStream>,
    backlog: &mut Backlog,
    outbound: &mut mpsc::UnboundedReceiver<LinkOut>,
) -> LinkEnd {
    let (mut reader, mut writer) = conn.split();
    // Once the core has stopped, nothing read can be handled: only what it sent is written.
    let mut reading = true;
    loop {
        // What waited while the link was down leaves first, in order.
        while !backlog.stanzas.is_empty() {
            let batch: Vec<Element> = backlog
                .stanzas
                .drain(..backlog.stanzas.len().min(256))
                .collect();
            if let Err(error) = send_to_server(&mut writer, wire_form(&batch).as_bytes()).await {
                requeue(backlog, batch);
                return LinkEnd::Lost(error);
            }
        }
        tokio::select! {
            event = reader.next(), if reading => match event {
                Ok(StreamEvent::Element(stanza)) if stanza.ns() == STREAMS_NS => {
                    return LinkEnd::Lost(format!("stream error: {}", describe_stream_error(&stanza)));
                }
                Ok(StreamEvent::Element(stanza)) => {
                    let stanza = renamespace(stanza, COMPONENT_NS, CLIENT_NS);
                    link.metrics.stanza_in(stanza.name());
                    if link.core.send(CoreEvent::FromComponent(stanza)).await.is_err() {
                        reading = false;
                    }
                }
                Ok(StreamEvent::Close) => return LinkEnd::Lost("the server closed the stream".into()),
                Ok(StreamEvent::Open(_)) => unreachable!("one header per stream"),
                Err(ReadError::Stream(error)) => {
                    let answer = stream_error(error.condition(), &error.text());
                    let xml = prefixed(&answer.into(), false) + STREAM_CLOSE;
                    let _ = writer.write_all(xml.as_bytes()).await;
                    return LinkEnd::Lost(error.to_string());
                }
                Err(error) => return LinkEnd::Lost(error.to_string()),
            },
            item = outbound.recv() => {
                let mut batch = Vec::new();
                let mut stopping = false;
                let mut next = item;
                while let Some(item) = next.take() {
                    match item {
                        LinkOut::Stanza(stanza) => batch.push(stanza),
                        LinkOut::Close => { stopping = true; break; }
                    }
                    if batch.len() < 256 {
                        next = outbound.try_recv().ok();
                    }
                }
                if next.is_none() && batch.is_empty() && !stopping {
                    // Every sender is gone: the core has stopped.
                    stopping = true;
                }
                if let Err(error) = send_to_server(&mut writer, wire_form(&batch).as_bytes()).await {
                    requeue(backlog, batch);
                    return LinkEnd::Lost(error);
                }
                if stopping {
                    let _ = writer.write_all(b"</stream:stream>").await;
                    let _ = writer.shutdown().await;
                    return LinkEnd::Stopped;
                }
            }
        }
    }
}

/// Writes to the server, giving up when it stops reading.
async fn send_to_server(
    writer: &mut tokio::io::WriteHalf<TcpStream>,
    bytes: &[u8],
) -> Result<(), String> {
    match tokio::time::timeout(STALL_TIMEOUT, writer.write_all(bytes)).await {
        Ok(written) => written.map_err(|error| error.to_string()),
        Err(_) => Err("the server stopped reading".into()),
    }
}

/// Stanzas as the component stream writes them: in `jabber:component:accept`.
fn wire_form(batch: &[Element]) -> String {
    batch
        .iter()
        .map(|stanza| String::from(&renamespace(stanza.clone(), CLIENT_NS, COMPONENT_NS)))
        .collect()
}

fn requeue(backlog: &mut Backlog, batch: Vec<Element>) {
    for stanza in batch.into_iter().rev() {
        backlog.stanzas.push_front(stanza);
    }
}

fn describe_stream_error(error: &Element) -> String {
    match StreamError::try_from(error.clone()) {
        Ok(error) => error.to_string(),
        Err(_) => format!("unrecognised: {}", String::from(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};
    use tokio::net::TcpListener;

    #[test]
    fn the_backlog_keeps_order_and_drops_past_its_bound() {
        let stanza = |id: &str| -> Element {
            format!("<message xmlns='jabber:client' id='{id}'/>")
                .parse()
                .unwrap()
        };
        let mut backlog = Backlog {
            stanzas: VecDeque::new(),
            bound: 2,
            dropped: 0,
        };
        for id in ["1", "2", "3", "4"] {
            backlog.push(stanza(id));
        }
        assert_eq!(backlog.dropped, 2);
        let batch: Vec<Element> = backlog.stanzas.drain(..).collect();
        requeue(&mut backlog, batch);
        let ids: Vec<_> = backlog
            .stanzas
            .iter()
            .map(|s| s.attr("id").unwrap())
            .collect();
        assert_eq!(ids, ["1", "2"]);
    }

    /// Plays the server's side of XEP-0114 once: header, handshake check, success.
    async fn accept_component(listener: &TcpListener, secret: &str) -> XmlReader<TcpStream> {
        let (socket, _) = listener.accept().await.unwrap();
        let mut conn = XmlReader::new(socket, 1 << 16);
        let StreamEvent::Open(header) = conn.next().await.unwrap() else {
            panic!("no header")
        };
        assert_eq!(header.namespace.as_deref(), Some(COMPONENT_NS));
        assert_eq!(header.to.as_deref(), Some("conference.localhost"));
        let reply = format!("<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAMS_NS}' id='s1d' from='conference.localhost'>");
        conn.get_mut().write_all(reply.as_bytes()).await.unwrap();
        let StreamEvent::Element(handshake) = conn.next().await.unwrap() else {
            panic!("no handshake")
        };
        let expected: String = Sha1::digest(format!("s1d{secret}").as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(
            handshake.text(),
            expected,
            "SHA-1 of the stream id and the secret"
        );
        conn.get_mut().write_all(b"<handshake/>").await.unwrap();
        conn
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stanzas_sent_while_the_link_is_down_leave_in_order_once_it_is_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (lanes, mut inbox) = crate::inbox::inbox();
        let core = lanes.open(16);
        let link = Link {
            server: listener.local_addr().unwrap().to_string(),
            secret: "s3cret".into(),
            domain: "conference.localhost".into(),
            queue_bound: 100,
            max_stanza_bytes: 1 << 16,
            core,
            metrics: Metrics::new(),
        };
        let (to_link, from_core) = mpsc::unbounded_channel();
        let running = tokio::spawn(run(link, from_core));

        // Up: a stanza from the server reaches the core, in jabber:client.
        let mut first = accept_component(&listener, "s3cret").await;
        first
            .get_mut()
            .write_all(b"<message from='a@localhost/x' to='room@conference.localhost' type='groupchat'><body>hi</body></message>")
            .await
            .unwrap();
        let (inbound, _inbox) = tokio::task::spawn_blocking(move || {
            (inbox.recv_timeout(Duration::from_secs(5)).unwrap(), inbox)
        })
        .await
        .unwrap();
        let CoreEvent::FromComponent(inbound) = inbound else {
            panic!("not a component stanza")
        };
        assert_eq!(inbound.ns(), CLIENT_NS);
        assert!(inbound.has_child("body", CLIENT_NS));

        // Down: the server drops the link; what the core sends meanwhile waits.
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for id in ["1", "2", "3"] {
            let stanza: Element = format!(
                "<message xmlns='jabber:client' from='room@conference.localhost' to='a@localhost/x' id='{id}'><body>b</body></message>"
            )
            .parse()
            .unwrap();
            to_link.send(LinkOut::Stanza(stanza)).unwrap();
        }

        // Back: they arrive in order, in the component namespace.
        let mut second = accept_component(&listener, "s3cret").await;
        for id in ["1", "2", "3"] {
            let StreamEvent::Element(stanza) = second.next().await.unwrap() else {
                panic!("no stanza")
            };
            assert_eq!(stanza.attr("id"), Some(id));
            assert_eq!(stanza.ns(), COMPONENT_NS);
            assert!(stanza.has_child("body", COMPONENT_NS));
        }

        // Stopping closes the stream.
        to_link.send(LinkOut::Close).unwrap();
        assert_eq!(second.next().await.unwrap(), StreamEvent::Close);
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
    }
}
