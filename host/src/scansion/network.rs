//! Scripts over the network (`muc-host check --server HOST:PORT`): each client is a real c2s
//! connection to a server that accepts any password (`muc-host serve --insecure-auth`, or
//! Prosody with insecure authentication), so the same scripts cross-check servers.
//!
//! After each stanza a client sends, it pings the MUC service and waits for the answer: once
//! the ping is answered, the server has handled the stanza before it (both go through the
//! service in order), so a later step cannot overtake it.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use jid::Jid;
use minidom::Element;

use super::Harness;
use crate::xmpp::stream::{StreamEvent, StreamParser};

const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// How long logging in and each ping round trip may take.
const ROUND_TRIP: Duration = Duration::from_secs(10);
const MAX_STANZA_BYTES: usize = 1 << 20;

pub struct NetworkHarness {
    server: SocketAddr,
    muc_domain: String,
    clients: HashMap<String, Client>,
    pings: u64,
}

struct Client {
    socket: TcpStream,
    received: Receiver<Element>,
    /// Stanzas that arrived while waiting for a ping's answer, for the script to read first.
    early: VecDeque<Element>,
}

impl NetworkHarness {
    pub fn new(server: SocketAddr, muc_domain: &str) -> NetworkHarness {
        NetworkHarness {
            server,
            muc_domain: muc_domain.to_string(),
            clients: HashMap::new(),
            pings: 0,
        }
    }

    fn client(&mut self, name: &str) -> Result<&mut Client> {
        self.clients
            .get_mut(name)
            .ok_or_else(|| anyhow!("{name} is not connected"))
    }
}

impl Harness for NetworkHarness {
    fn connect(&mut self, client: &str, jid: &str, password: &str) -> Result<String> {
        let jid = Jid::new(jid).with_context(|| format!("{client}'s JID '{jid}'"))?;
        let mut login = Login::open(self.server, jid.domain().as_str())?;
        // SASL has no empty passwords (RFC 4616); scripts that give none get any.
        let password = if password.is_empty() {
            "scansion"
        } else {
            password
        };
        login.authenticate(
            jid.node().map(|node| node.as_str()).unwrap_or_default(),
            password,
        )?;
        login.restart(jid.domain().as_str())?;
        let bound = login.bind(jid.resource().map(|resource| resource.as_str()))?;
        let socket = login.socket.try_clone()?;
        let (sender, received) = mpsc::channel();
        std::thread::spawn(move || login.forward(sender));
        self.clients.insert(
            client.to_string(),
            Client {
                socket,
                received,
                early: VecDeque::new(),
            },
        );
        Ok(bound)
    }

    fn send(&mut self, client: &str, stanza: Element) -> Result<()> {
        self.pings += 1;
        let id = format!("scansion-sync-{}", self.pings);
        let ping = format!(
            "<iq xmlns='jabber:client' type='get' id='{id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            self.muc_domain
        );
        let client = self.client(client)?;
        let mut bytes = String::from(&stanza);
        bytes.push_str(&ping);
        client.socket.write_all(bytes.as_bytes())?;
        let deadline = Instant::now() + ROUND_TRIP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let stanza = client
                .received
                .recv_timeout(left)
                .map_err(|_| anyhow!("the server did not answer a ping within {ROUND_TRIP:?}"))?;
            if stanza.name() == "iq" && stanza.attr("id") == Some(id.as_str()) {
                return Ok(());
            }
            client.early.push_back(stanza);
        }
    }

    fn next_stanza(&mut self, client: &str, wait: Duration) -> Option<Element> {
        let client = self.clients.get_mut(client)?;
        if let Some(stanza) = client.early.pop_front() {
            return Some(stanza);
        }
        client.received.recv_timeout(wait).ok()
    }

    fn disconnect(&mut self, client: &str) -> Result<()> {
        let client = self
            .clients
            .remove(client)
            .ok_or_else(|| anyhow!("{client} is not connected"))?;
        let mut socket = client.socket;
        socket.write_all(b"</stream:stream>")?;
        // Let the server see the close before the next step acts.
        std::thread::sleep(Duration::from_millis(100));
        let _ = socket.shutdown(std::net::Shutdown::Both);
        Ok(())
    }
}

impl Drop for NetworkHarness {
    /// Whatever the script left connected leaves now, so the next script starts afresh.
    fn drop(&mut self) {
        for name in self.clients.keys().cloned().collect::<Vec<_>>() {
            let _ = self.disconnect(&name);
        }
    }
}

/// A connection being logged in.
struct Login {
    socket: TcpStream,
    parser: StreamParser,
    events: VecDeque<StreamEvent>,
}

impl Login {
    fn open(server: SocketAddr, domain: &str) -> Result<Login> {
        let socket = TcpStream::connect_timeout(&server, ROUND_TRIP)
            .with_context(|| format!("connecting to {server}"))?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(ROUND_TRIP))?;
        let mut login = Login {
            socket,
            parser: StreamParser::new(MAX_STANZA_BYTES),
            events: VecDeque::new(),
        };
        login.restart(domain)?;
        Ok(login)
    }

    /// Opens a stream and reads the features.
    fn restart(&mut self, domain: &str) -> Result<Element> {
        self.parser = StreamParser::new(MAX_STANZA_BYTES);
        self.events.clear();
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        );
        self.socket.write_all(header.as_bytes())?;
        match self.next()? {
            StreamEvent::Open(_) => {}
            other => bail!("expected the server's stream header, got {other:?}"),
        }
        let features = self.element()?;
        if features.name() != "features" {
            bail!("expected stream features, got {}", String::from(&features));
        }
        Ok(features)
    }

    /// SASL PLAIN: the scripts' servers accept any password, and PLAIN is what they offer
    /// without TLS.
    fn authenticate(&mut self, user: &str, password: &str) -> Result<()> {
        let credentials = format!("\0{user}\0{password}");
        let auth = format!(
            "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{}</auth>",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        self.socket.write_all(auth.as_bytes())?;
        let answer = self.element()?;
        if answer.name() != "success" {
            bail!(
                "the server refused PLAIN for {user} (run it with insecure authentication): {}",
                String::from(&answer)
            );
        }
        Ok(())
    }

    fn bind(&mut self, resource: Option<&str>) -> Result<String> {
        let resource = resource
            .map(|resource| format!("<resource>{resource}</resource>"))
            .unwrap_or_default();
        let bind = format!("<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='{BIND_NS}'>{resource}</bind></iq>");
        self.socket.write_all(bind.as_bytes())?;
        let answer = self.element()?;
        let jid = answer
            .get_child("bind", BIND_NS)
            .and_then(|bind| bind.get_child("jid", BIND_NS))
            .map(Element::text)
            .ok_or_else(|| anyhow!("binding failed: {}", String::from(&answer)))?;
        // Servers that still want the RFC 3921 session get it; it is harmless elsewhere.
        let session = format!("<iq xmlns='jabber:client' type='set' id='session'><session xmlns='{SESSION_NS}'/></iq>");
        self.socket.write_all(session.as_bytes())?;
        self.element()?;
        Ok(jid)
    }

    fn element(&mut self) -> Result<Element> {
        match self.next()? {
            StreamEvent::Element(element) => Ok(element),
            other => bail!("expected a stanza, got {other:?}"),
        }
    }

    fn next(&mut self) -> Result<StreamEvent> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            let read = self.socket.read(&mut buffer)?;
            if read == 0 {
                bail!("the server closed the connection");
            }
            let events = self
                .parser
                .feed(&buffer[..read])
                .map_err(|error| anyhow!("the server's stream broke: {error}"))?;
            self.events.extend(events);
        }
    }

    /// Hands every stanza the server sends to `sender` until the stream ends.
    fn forward(mut self, sender: mpsc::Sender<Element>) {
        let _ = self.socket.set_read_timeout(None);
        while let Ok(StreamEvent::Element(stanza)) = self.next() {
            if sender.send(stanza).is_err() {
                return;
            }
        }
    }
}
