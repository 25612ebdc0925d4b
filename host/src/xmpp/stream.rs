//! The inbound side of an XML stream (RFC 6120 §4): bytes in, a stream header and whole
//! top-level elements out. rxml does the XML (restricted as XMPP requires: no comments, no
//! DTDs, no processing instructions) and minidom builds the elements; this file only cuts the
//! stream into stanzas and enforces the size limit while a stanza is still arriving.

use minidom::tree_builder::TreeBuilder;
use minidom::Element;
use rxml::{Parse, RawEvent, RawParser, WithOptions};
use xmpp_parsers::stream_error::DefinedCondition;

pub const STREAMS_NS: &str = "http://etherx.jabber.org/streams";
/// Deeper stanzas are refused: real ones nest a handful of levels, and the element tree is
/// walked recursively (dropping, serialising), so depth must not be the peer's to choose.
const MAX_DEPTH: usize = 48;
/// The stream header's own size limit (its attributes are not part of any stanza).
const MAX_HEADER_BYTES: usize = 4096;

/// What the peer said in its `<stream:stream>` header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// The default namespace: `jabber:client`, `jabber:component:accept`...
    pub namespace: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum StreamEvent {
    Open(StreamHeader),
    Element(Element),
    /// The peer closed its stream (`</stream:stream>`).
    Close,
}

/// Why a stream must end, named by its RFC 6120 §4.9.3 condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    NotWellFormed(String),
    /// A stanza larger than the limit (§4.9.3.12 policy-violation, as Prosody does).
    TooLarge(usize),
    /// Elements nested deeper than [`MAX_DEPTH`], or a header over [`MAX_HEADER_BYTES`].
    TooComplex(&'static str),
    /// The root is not `stream:stream` in the streams namespace.
    InvalidNamespace,
    /// A `<stream:stream>` header inside the stream: a new stream begins only where the
    /// negotiation restarts it (after STARTTLS or SASL success, RFC 6120 §4.3.3), on a new parser.
    HeaderInsideStream,
    /// A WebSocket stream whose first element is not `<open/>` (RFC 7395 §3.4).
    OpenMissing,
    /// A binary WebSocket message: XMPP travels in text messages (RFC 7395 §3.2).
    BinaryMessage,
}

impl StreamError {
    pub fn condition(&self) -> DefinedCondition {
        match self {
            StreamError::NotWellFormed(_) => DefinedCondition::NotWellFormed,
            StreamError::TooLarge(_) | StreamError::TooComplex(_) => {
                DefinedCondition::PolicyViolation
            }
            StreamError::InvalidNamespace => DefinedCondition::InvalidNamespace,
            // §4.9.3.10: XML the stream's schema does not allow, which is what a header nested
            // in the stream is (it is well-formed, so not-well-formed would not be true).
            StreamError::HeaderInsideStream => DefinedCondition::InvalidXml,
            // As a TCP stream whose root is not `<stream:stream>`.
            StreamError::OpenMissing => DefinedCondition::InvalidNamespace,
            StreamError::BinaryMessage => DefinedCondition::UnsupportedEncoding,
        }
    }

    pub fn text(&self) -> String {
        match self {
            StreamError::NotWellFormed(why) => why.clone(),
            StreamError::TooLarge(limit) => format!("stanza larger than {limit} bytes"),
            StreamError::TooComplex(what) => what.to_string(),
            StreamError::InvalidNamespace => "the root must be <stream:stream>".into(),
            StreamError::HeaderInsideStream => {
                "a stream header inside the stream: streams restart only after STARTTLS or SASL"
                    .into()
            }
            StreamError::OpenMissing => {
                "the stream must begin with <open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
                    .into()
            }
            StreamError::BinaryMessage => "XMPP over WebSocket is sent in text messages".into(),
        }
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.condition(), self.text())
    }
}

pub struct StreamParser {
    parser: RawParser,
    builder: TreeBuilder,
    /// Open elements: 1 inside the stream header, 2 and more inside a stanza.
    depth: usize,
    header: StreamHeader,
    max_stanza_bytes: usize,
    stanza_bytes: usize,
    header_bytes: usize,
    /// Attributes (namespace declarations included) of the element head being read, to find
    /// a repeated one once the head is built (the tree builder keeps only the last of them).
    head_attributes: usize,
    closed: bool,
    /// The fault that ended the stream, reported once the stanzas before it are taken.
    failed: Option<StreamError>,
}

impl StreamParser {
    pub fn new(max_stanza_bytes: usize) -> StreamParser {
        let options = rxml::Options {
            // No single name, attribute value or text chunk may exceed the stanza limit either.
            max_token_length: max_stanza_bytes.max(1024),
            ..rxml::Options::default()
        };
        StreamParser {
            parser: RawParser::with_options(options),
            builder: TreeBuilder::new(),
            depth: 0,
            header: StreamHeader::default(),
            max_stanza_bytes,
            stanza_bytes: 0,
            header_bytes: 0,
            head_attributes: 0,
            closed: false,
            failed: None,
        }
    }

    /// Parses what `data` holds; a partial stanza is kept for the next call. When `data`
    /// breaks the stream, the whole stanzas before the fault are still returned, and the fault
    /// is the answer to the next call.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Vec<StreamEvent>, StreamError> {
        if let Some(failure) = &self.failed {
            return Err(failure.clone());
        }
        let mut events = Vec::new();
        while !self.closed {
            let parsed = match self.parser.parse(&mut data, false) {
                Ok(Some(event)) => self.process(event),
                Ok(None) | Err(rxml::error::EndOrError::NeedMoreData) => break,
                Err(rxml::error::EndOrError::Error(error)) => {
                    Err(StreamError::NotWellFormed(error.to_string()))
                }
            };
            match parsed {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                Err(failure) if events.is_empty() => {
                    self.failed = Some(failure.clone());
                    return Err(failure);
                }
                Err(failure) => {
                    self.failed = Some(failure);
                    break;
                }
            }
        }
        Ok(events)
    }

    fn process(&mut self, event: RawEvent) -> Result<Option<StreamEvent>, StreamError> {
        if self.depth >= 1 && !matches!(event, RawEvent::ElementFoot(_) if self.depth == 1) {
            self.count(event_len(&event))?;
        } else if self.depth == 0 {
            self.header_bytes += event_len(&event);
            if self.header_bytes > MAX_HEADER_BYTES {
                return Err(StreamError::TooComplex("stream header too large"));
            }
        }
        match &event {
            // minidom cannot write `xml` back as a declared prefix (it is predeclared), and
            // would panic trying: the declaration says nothing, so it is dropped.
            RawEvent::Attribute(_, (Some(prefix), name), _)
                if prefix.as_str() == "xmlns" && name.as_str() == "xml" =>
            {
                return Ok(None)
            }
            RawEvent::ElementHeadOpen(..) if self.depth >= MAX_DEPTH => {
                return Err(StreamError::TooComplex("elements nested too deep"))
            }
            RawEvent::XmlDeclaration(..) => return Ok(None),
            // Whitespace between stanzas (keepalives) would pile up as text in the root.
            RawEvent::Text(..) if self.depth == 1 => return Ok(None),
            RawEvent::ElementHeadOpen(_, (prefix, name))
                if self.depth == 0
                    && (name.as_str() != "stream"
                        || prefix.as_ref().map(|p| p.as_str()) != Some("stream")) =>
            {
                return Err(StreamError::InvalidNamespace);
            }
            RawEvent::Attribute(_, (prefix, name), value) if self.depth == 0 => {
                let value = Some(value.to_string());
                match (prefix.as_ref().map(|p| p.as_str()), name.as_str()) {
                    (None, "xmlns") => self.header.namespace = value,
                    (Some("xmlns"), "stream") if value.as_deref() != Some(STREAMS_NS) => {
                        return Err(StreamError::InvalidNamespace)
                    }
                    (None, "to") => self.header.to = value,
                    (None, "from") => self.header.from = value,
                    (None, "id") => self.header.id = value,
                    (None, "version") => self.header.version = value,
                    _ => {}
                }
            }
            _ => {}
        }
        let (opens, closes) = match &event {
            RawEvent::ElementHeadOpen(..) => {
                self.head_attributes = 0;
                (false, false)
            }
            RawEvent::Attribute(..) => {
                self.head_attributes += 1;
                (false, false)
            }
            RawEvent::ElementHeadClose(_) => (true, false),
            RawEvent::ElementFoot(_) => (false, true),
            _ => (false, false),
        };
        self.builder
            .process_event(event)
            .map_err(|error| StreamError::NotWellFormed(error.to_string()))?;
        if opens {
            self.check_opened()?;
            self.depth += 1;
            if self.depth == 1 {
                return Ok(Some(StreamEvent::Open(self.header.clone())));
            }
        }
        if closes {
            self.depth -= 1;
            match self.depth {
                0 => {
                    self.closed = true;
                    return Ok(Some(StreamEvent::Close));
                }
                1 => {
                    self.stanza_bytes = 0;
                    let element = self.builder.unshift_child().ok_or_else(|| {
                        StreamError::NotWellFormed("a stanza closed but none was open".into())
                    })?;
                    return Ok(Some(StreamEvent::Element(element)));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// The element whose head was just read: no attribute twice (XML 1.0 §3.1, and Namespaces
    /// §6.3 once prefixes are resolved), and no stream header where a stanza belongs.
    fn check_opened(&mut self) -> Result<(), StreamError> {
        let opened = self.builder.top().expect("a head was just closed");
        let kept = opened.attrs().len() + opened.prefixes.declared_prefixes().len();
        if kept != self.head_attributes {
            let name = opened.name().to_string();
            return Err(StreamError::NotWellFormed(format!(
                "an attribute of <{name}> is given twice"
            )));
        }
        if self.depth == 1 && opened.name() == "stream" && opened.ns() == STREAMS_NS {
            return Err(StreamError::HeaderInsideStream);
        }
        Ok(())
    }

    /// Whether no stanza is half read.
    pub fn between_stanzas(&self) -> bool {
        self.depth <= 1
    }

    fn count(&mut self, bytes: usize) -> Result<(), StreamError> {
        self.stanza_bytes += bytes;
        if self.stanza_bytes > self.max_stanza_bytes {
            return Err(StreamError::TooLarge(self.max_stanza_bytes));
        }
        Ok(())
    }
}

fn event_len(event: &RawEvent) -> usize {
    match event {
        RawEvent::XmlDeclaration(metrics, _)
        | RawEvent::ElementHeadOpen(metrics, _)
        | RawEvent::Attribute(metrics, ..)
        | RawEvent::ElementHeadClose(metrics)
        | RawEvent::ElementFoot(metrics)
        | RawEvent::Text(metrics, _) => metrics.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    fn feed_all(parser: &mut StreamParser, text: &str) -> Result<Vec<StreamEvent>, StreamError> {
        parser.feed(text.as_bytes())
    }

    #[test]
    fn a_header_then_stanzas_then_the_close() {
        let mut parser = StreamParser::new(1 << 16);
        let text = format!(
            "{HEADER} <message to='a@b'><body>hi</body></message>\n<presence/></stream:stream>"
        );
        let events = feed_all(&mut parser, &text).unwrap();
        assert_eq!(events.len(), 4);
        let StreamEvent::Open(header) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(header.namespace.as_deref(), Some("jabber:client"));
        assert_eq!(header.to.as_deref(), Some("localhost"));
        let StreamEvent::Element(message) = &events[1] else {
            panic!()
        };
        assert_eq!(message.name(), "message");
        assert_eq!(message.ns(), "jabber:client");
        assert_eq!(
            message.get_child("body", "jabber:client").unwrap().text(),
            "hi"
        );
        assert_eq!(events[3], StreamEvent::Close);
    }

    #[test]
    fn a_redundant_xml_prefix_declaration_is_dropped_so_the_stanza_can_be_written_again() {
        let mut parser = StreamParser::new(1 << 16);
        feed_all(&mut parser, HEADER).unwrap();
        let events = feed_all(
            &mut parser,
            "<message xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'><body>x</body></message>",
        )
        .unwrap();
        let StreamEvent::Element(message) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(String::from(message).contains("<body>x</body>"));
    }

    #[test]
    fn the_stanzas_before_a_fault_are_kept_and_the_fault_comes_next() {
        let mut parser = StreamParser::new(1 << 16);
        feed_all(&mut parser, HEADER).unwrap();
        let events = feed_all(&mut parser, "<presence/><message><a></b>").unwrap();
        assert_eq!(events.len(), 1);
        assert!(matches!(
            parser.feed(b""),
            Err(StreamError::NotWellFormed(_))
        ));
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let text = format!("{HEADER}<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>");
        let whole = feed_all(&mut StreamParser::new(1 << 16), &text).unwrap();
        let mut parser = StreamParser::new(1 << 16);
        let mut split = Vec::new();
        for byte in text.as_bytes() {
            split.extend(parser.feed(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(whole, split);
    }

    #[test]
    fn an_oversized_stanza_is_refused_before_it_ends() {
        let mut parser = StreamParser::new(2048);
        feed_all(&mut parser, HEADER).unwrap();
        let body = "x".repeat(1000);
        let mut error = None;
        for _ in 0..5 {
            if let Err(e) = feed_all(&mut parser, &format!("<message><body>{body}")) {
                error = Some(e);
                break;
            }
        }
        assert_eq!(error, Some(StreamError::TooLarge(2048)));
    }

    #[test]
    fn many_small_stanzas_never_hit_the_limit() {
        let mut parser = StreamParser::new(1024);
        feed_all(&mut parser, HEADER).unwrap();
        for _ in 0..100 {
            let events =
                feed_all(&mut parser, "<presence><status>here</status></presence> ").unwrap();
            assert_eq!(events.len(), 1);
        }
    }

    #[test]
    fn bad_input_is_a_stream_error() {
        let not_stream = "<root xmlns='jabber:client'>";
        assert_eq!(
            feed_all(&mut StreamParser::new(1024), not_stream),
            Err(StreamError::InvalidNamespace)
        );
        let wrong_streams_ns = "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>";
        assert_eq!(
            feed_all(&mut StreamParser::new(1024), wrong_streams_ns),
            Err(StreamError::InvalidNamespace)
        );
        for bad in [
            "<message><body></message>",
            "<message><!-- no --></message>",
            "<a:b/>",
            "<message a='1' a='2'/>",
            "<message><body xml:lang='en' xml:lang='fr'>x</body></message>",
            "<message xmlns='jabber:client' xmlns='jabber:client'/>",
            // Two prefixes for one namespace make the same attribute twice (Namespaces §6.3).
            "<message xmlns:p='urn:u' xmlns:q='urn:u' p:a='1' q:a='2'/>",
        ] {
            let mut parser = StreamParser::new(1024);
            feed_all(&mut parser, HEADER).unwrap();
            assert!(
                matches!(
                    feed_all(&mut parser, bad),
                    Err(StreamError::NotWellFormed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_stream_header_inside_the_stream_is_refused() {
        let mut parser = StreamParser::new(1 << 16);
        feed_all(&mut parser, HEADER).unwrap();
        assert_eq!(
            feed_all(&mut parser, &HEADER[HEADER.find("<stream").unwrap()..]),
            Err(StreamError::HeaderInsideStream)
        );
        // The same name in another namespace is only an unknown element, for the caller.
        let mut parser = StreamParser::new(1 << 16);
        feed_all(&mut parser, HEADER).unwrap();
        let events = feed_all(&mut parser, "<stream xmlns='urn:example'/>").unwrap();
        assert!(
            matches!(&events[..], [StreamEvent::Element(_)]),
            "{events:?}"
        );
    }

    #[test]
    fn distinct_attributes_and_prefixes_are_kept() {
        let mut parser = StreamParser::new(1 << 16);
        feed_all(&mut parser, HEADER).unwrap();
        let events = feed_all(
            &mut parser,
            "<message xmlns:p='urn:p' xmlns:q='urn:q' p:a='1' q:a='2' a='3' xml:lang='en'/>",
        )
        .unwrap();
        let [StreamEvent::Element(message)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(message.attrs().len(), 4);
    }

    mod fuzz {
        //! Bounded property runs (CI runs them with every `cargo test`): whatever the bytes and
        //! however the network cuts them, the parser answers with events or a stream error,
        //! never a panic, and where the stream is cut never changes what it sees.
        use proptest::prelude::*;

        use super::super::*;
        use super::HEADER;

        fn stanza() -> impl Strategy<Value = String> {
            let text = "[a-z <>&;'\"]{0,12}".prop_map(|t| {
                t.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            });
            (
                prop::sample::select(vec!["message", "presence", "iq"]),
                prop::sample::select(vec![
                    "",
                    " type='groupchat'",
                    " to='r@c/n'",
                    " id='x&amp;y'",
                ]),
                text,
                prop::sample::select(vec![
                    "",
                    "<x xmlns='http://jabber.org/protocol/muc'/>",
                    "<b:y xmlns:b='urn:b'/>",
                ]),
            )
                .prop_map(|(name, attrs, text, child)| {
                    format!("<{name}{attrs}><body>{text}</body>{child}</{name}>")
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                let mut parser = StreamParser::new(1024);
                let _ = parser.feed(HEADER.as_bytes());
                for event in parser.feed(&bytes).unwrap_or_default() {
                    if let StreamEvent::Element(element) = event {
                        let _ = String::from(&element);
                    }
                }
            }

            #[test]
            fn mutated_stanzas_never_panic(
                stanzas in prop::collection::vec(stanza(), 1..6),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            ) {
                let mut bytes = format!("{HEADER}{}", stanzas.concat()).into_bytes();
                for (at, byte) in flips {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                // Whatever is taken as a stanza can be written out again.
                for event in StreamParser::new(256).feed(&bytes).unwrap_or_default() {
                    if let StreamEvent::Element(element) = event {
                        let _ = String::from(&element);
                    }
                }
            }

            #[test]
            fn where_the_stream_is_cut_changes_nothing(
                stanzas in prop::collection::vec(stanza(), 1..6),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let text = format!("{HEADER}{}", stanzas.concat());
                let bytes = text.as_bytes();
                let whole = StreamParser::new(1 << 16).feed(bytes).unwrap();
                prop_assert_eq!(whole.len(), stanzas.len() + 1);
                let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len())).collect();
                cuts.push(bytes.len());
                cuts.sort();
                let mut parser = StreamParser::new(1 << 16);
                let (mut pieces, mut from) = (Vec::new(), 0);
                for cut in cuts {
                    pieces.extend(parser.feed(&bytes[from..cut]).unwrap());
                    from = cut;
                }
                prop_assert_eq!(whole, pieces);
            }
        }
    }
}
