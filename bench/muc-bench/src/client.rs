//! One benchmark client over c2s: plain TCP, SASL PLAIN (the server under test accepts any
//! password) or, where that is not offered, ANONYMOUS (ejabberd's anonymous logins); resource
//! binding; then a reader and a writer half.

use anyhow::{bail, Context, Result};
use base64::Engine;
use minidom::Element;
use muc_host::xmpp::stream::{StreamEvent, StreamParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// The largest stanza a client accepts: room presences of big rooms are small; history is off.
const MAX_STANZA: usize = 1 << 20;

/// Reads elements off a stream, however the bytes arrive.
pub struct Reader {
    read: OwnedReadHalf,
    parser: StreamParser,
    pending: std::collections::VecDeque<StreamEvent>,
    buffer: Vec<u8>,
}

impl Reader {
    fn new(read: OwnedReadHalf) -> Reader {
        Reader {
            read,
            parser: StreamParser::new(MAX_STANZA),
            pending: Default::default(),
            buffer: vec![0; 64 << 10],
        }
    }

    /// The next stream event; `None` when the server closed the connection.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let read = self.read.read(&mut self.buffer).await?;
            if read == 0 {
                return Ok(None);
            }
            let events = self
                .parser
                .feed(&self.buffer[..read])
                .map_err(|error| anyhow::anyhow!("stream error: {error:?}"))?;
            self.pending.extend(events);
        }
    }

    /// The next stanza (stream headers skipped).
    pub async fn element(&mut self) -> Result<Element> {
        loop {
            match self.next().await? {
                Some(StreamEvent::Element(element)) => return Ok(element),
                Some(StreamEvent::Open(_)) => continue,
                Some(StreamEvent::Close) | None => bail!("the server closed the stream"),
            }
        }
    }

    /// A new parser for a restarted stream (after SASL).
    fn restart(&mut self) {
        self.parser = StreamParser::new(MAX_STANZA);
        self.pending.clear();
    }
}

pub struct Client {
    pub reader: Reader,
    pub writer: OwnedWriteHalf,
}

fn header(domain: &str) -> String {
    format!("<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
}

impl Client {
    /// Connects and logs `user@domain/bench` in with SASL PLAIN, then binds.
    pub async fn login(server: &str, domain: &str, user: &str, password: &str) -> Result<Client> {
        let socket = TcpStream::connect(server)
            .await
            .with_context(|| format!("connecting to {server}"))?;
        socket.set_nodelay(true)?;
        let (read, mut writer) = socket.into_split();
        let mut reader = Reader::new(read);
        writer.write_all(header(domain).as_bytes()).await?;
        let features = reader.element().await?;
        let offered = |mechanism: &str| {
            features
                .get_child("mechanisms", SASL)
                .is_some_and(|m| m.children().any(|c| c.text() == mechanism))
        };
        let auth = if offered("PLAIN") {
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
            format!("<auth xmlns='{SASL}' mechanism='PLAIN'>{credentials}</auth>")
        } else if offered("ANONYMOUS") {
            format!("<auth xmlns='{SASL}' mechanism='ANONYMOUS'/>")
        } else {
            bail!("the server offers neither SASL PLAIN nor ANONYMOUS without TLS: start it with insecure authentication");
        };
        writer.write_all(auth.as_bytes()).await?;
        let outcome = reader.element().await?;
        if outcome.name() != "success" {
            bail!(
                "authentication failed for {user}: {}",
                String::from(&outcome)
            );
        }
        reader.restart();
        writer.write_all(header(domain).as_bytes()).await?;
        reader.element().await?; // the features after authentication
        writer
            .write_all(format!("<iq type='set' id='bind'><bind xmlns='{BIND}'><resource>bench</resource></bind></iq>").as_bytes())
            .await?;
        let bound = reader.element().await?;
        if !bound
            .get_child("bind", BIND)
            .is_some_and(|b| b.has_child("jid", BIND))
        {
            bail!("binding failed: {}", String::from(&bound));
        }
        Ok(Client { reader, writer })
    }

    pub async fn send(&mut self, xml: &str) -> Result<()> {
        self.writer.write_all(xml.as_bytes()).await?;
        Ok(())
    }

    /// Waits for the stanza `wanted` accepts, skipping the others; errors name what arrived.
    pub async fn wait_for(&mut self, wanted: impl Fn(&Element) -> bool) -> Result<Element> {
        loop {
            let element = self.reader.element().await?;
            if element.attr("type") == Some("error") {
                bail!(
                    "the server answered with an error: {}",
                    String::from(&element)
                );
            }
            if wanted(&element) {
                return Ok(element);
            }
        }
    }
}
