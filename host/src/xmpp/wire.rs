//! What both stream kinds (client connections and the component link) share on the wire:
//! reading events from a socket, and the few fixed pieces of XML a stream opens and ends with.

use std::collections::{BTreeMap, VecDeque};

use minidom::{Element, Node};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use xmpp_parsers::message::Lang;
use xmpp_parsers::stream_error::{DefinedCondition, StreamError as ErrorElement};

use super::stream::{StreamError, StreamEvent, StreamParser, STREAMS_NS};

/// A byte stream a connection runs over: TCP, or TLS over it.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the socket.
    Eof,
    Io(std::io::Error),
    /// The peer broke the stream: answer with this stream error.
    Stream(StreamError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => write!(f, "connection closed"),
            ReadError::Io(error) => write!(f, "{error}"),
            ReadError::Stream(error) => write!(f, "{}: {}", error.condition(), error.text()),
        }
    }
}

/// Reads stream events from `io`.
pub struct XmlReader<R> {
    io: R,
    parser: StreamParser,
    events: VecDeque<StreamEvent>,
    max_stanza_bytes: usize,
}

impl<R: AsyncRead + Unpin> XmlReader<R> {
    pub fn new(io: R, max_stanza_bytes: usize) -> XmlReader<R> {
        XmlReader {
            io,
            parser: StreamParser::new(max_stanza_bytes),
            events: VecDeque::new(),
            max_stanza_bytes,
        }
    }

    pub async fn next(&mut self) -> Result<StreamEvent, ReadError> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            // A fault found after the last stanzas handed out is reported before reading more.
            self.parser.feed(&[]).map_err(ReadError::Stream)?;
            let read = self.io.read(&mut buffer).await.map_err(ReadError::Io)?;
            if read == 0 {
                return Err(ReadError::Eof);
            }
            let events = self
                .parser
                .feed(&buffer[..read])
                .map_err(ReadError::Stream)?;
            self.events.extend(events);
        }
    }

    /// A new stream begins on the same connection (after STARTTLS or SASL, RFC 6120 §4.3.3).
    pub fn restart(&mut self) {
        self.parser = StreamParser::new(self.max_stanza_bytes);
        self.events.clear();
    }

    pub fn max_stanza_bytes(&self) -> usize {
        self.max_stanza_bytes
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// The transport, to wrap it in TLS; the stream restarts on the new layer.
    pub fn into_inner(self) -> R {
        self.io
    }

    /// The same stream read from the transport's read half, and its write half for a writer.
    pub fn split(self) -> (XmlReader<ReadHalf<R>>, WriteHalf<R>)
    where
        R: AsyncWrite,
    {
        let (read, write) = tokio::io::split(self.io);
        let reader = XmlReader {
            io: read,
            parser: self.parser,
            events: self.events,
            max_stanza_bytes: self.max_stanza_bytes,
        };
        (reader, write)
    }
}

/// The opening tag of the stream we send.
pub fn stream_header(namespace: &str, from: &str, id: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{namespace}' xmlns:stream='{STREAMS_NS}' \
         id='{id}' from='{}' version='1.0' xml:lang='en'>",
        escape(from)
    )
}

/// A stream error (RFC 6120 §4.9) with its text, in English, when there is one.
pub fn stream_error(condition: DefinedCondition, text: &str) -> ErrorElement {
    let mut texts = BTreeMap::new();
    if !text.is_empty() {
        texts.insert(Lang("en".into()), text.to_string());
    }
    ErrorElement {
        condition,
        texts,
        application_specific: Vec::new(),
    }
}

/// `element`, of the streams namespace, written with the `stream:` prefix clients look for
/// (`<stream:features>`, `<stream:error>`); `declare`: with the prefix's declaration, where no
/// stream root made it (WebSocket).
pub fn prefixed(element: &Element, declare: bool) -> String {
    debug_assert_eq!(element.ns(), STREAMS_NS);
    let name = element.name();
    let mut xml = format!("<stream:{name}");
    if declare {
        xml.push_str(&format!(" xmlns:stream='{STREAMS_NS}'"));
    }
    xml.push('>');
    for child in element.children() {
        xml.push_str(&String::from(child));
    }
    xml.push_str(&format!("</stream:{name}>"));
    xml
}

/// The end of a stream on a byte stream.
pub const STREAM_CLOSE: &str = "</stream:stream>";

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// `element` moved from namespace `from` to `to`, with its children in `from`: the component
/// stream calls stanzas `jabber:component:accept`, the plugin and router `jabber:client`.
/// Elements of other namespaces are kept whole, with whatever they carry (a forwarded
/// `jabber:client` message stays one).
pub fn renamespace(mut element: Element, from: &str, to: &str) -> Element {
    if element.ns() != from {
        return element;
    }
    let ns = to.to_string();
    let mut moved = Element::bare(element.name().to_string(), ns);
    *moved.attrs_mut() = element.attrs().clone();
    for node in element.take_nodes() {
        match node {
            Node::Element(child) => {
                moved.append_child(renamespace(child, from, to));
            }
            Node::Text(text) => moved.append_text_node(text),
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_error_is_written_with_the_stream_prefix() {
        let error = Element::from(stream_error(DefinedCondition::PolicyViolation, "too <big>"));
        let xml = prefixed(&error, false);
        assert!(
            xml.starts_with(
                "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'"
            ),
            "{xml}"
        );
        assert!(xml.ends_with("</stream:error>"), "{xml}");
        assert!(
            xml.contains("xml:lang='en'>too &lt;big&gt;</text>"),
            "{xml}"
        );
        let declared = prefixed(&error, true);
        assert!(
            declared.starts_with(&format!("<stream:error xmlns:stream='{STREAMS_NS}'>")),
            "{declared}"
        );
        let bare = Element::from(stream_error(DefinedCondition::Conflict, ""));
        assert!(!prefixed(&bare, false).contains("<text"));
    }

    #[test]
    fn renamespacing_moves_the_stanza_and_its_children_only() {
        let stanza: Element = "<message xmlns='jabber:component:accept' to='a@b' type='groupchat'>\
            <body>hi &amp; bye</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>"
            .parse()
            .unwrap();
        let client = renamespace(stanza, "jabber:component:accept", "jabber:client");
        assert_eq!(client.ns(), "jabber:client");
        assert_eq!(client.attr("type"), Some("groupchat"));
        assert_eq!(
            client.get_child("body", "jabber:client").unwrap().text(),
            "hi & bye"
        );
        assert!(client.has_child("x", "http://jabber.org/protocol/muc#user"));
        let carrying: Element =
            "<message xmlns='jabber:client'><forwarded xmlns='urn:xmpp:forward:0'>\
            <message xmlns='jabber:client'><body>kept</body></message></forwarded></message>"
                .parse()
                .unwrap();
        let out = renamespace(carrying, "jabber:client", "jabber:component:accept");
        assert_eq!(out.ns(), "jabber:component:accept");
        let inner = out.get_child("forwarded", "urn:xmpp:forward:0").unwrap();
        assert!(
            inner.has_child("message", "jabber:client"),
            "a forwarded message stays jabber:client"
        );
    }
}
