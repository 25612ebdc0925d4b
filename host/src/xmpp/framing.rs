//! The inbound side of RFC 7395 framing: each WebSocket text message is one whole element, the
//! stream begins (and restarts) with `<open/>` and ends with `<close/>`, both in the framing
//! namespace. The messages are read by the same [`StreamParser`] as a TCP stream (fed a stream
//! header of our own first, as Prosody does), so the stanza limit, the depth limit and every
//! other check hold unchanged; this file only adds what the framing requires.

use minidom::Element;

use super::stream::{StreamError, StreamEvent, StreamHeader, StreamParser, STREAMS_NS};

pub const FRAMING_NS: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const CLIENT_NS: &str = "jabber:client";

pub struct FramedReader {
    parser: StreamParser,
    /// Until the client's `<open/>`: at the start, and after a restart.
    awaiting_open: bool,
}

impl FramedReader {
    pub fn new(max_stanza_bytes: usize) -> FramedReader {
        let mut parser = StreamParser::new(max_stanza_bytes);
        let root = format!(
            "<stream:stream xmlns='{CLIENT_NS}' xmlns:stream='{STREAMS_NS}' version='1.0'>"
        );
        let opened = parser.feed(root.as_bytes());
        debug_assert!(matches!(opened.as_deref(), Ok([StreamEvent::Open(_)])));
        FramedReader {
            parser,
            awaiting_open: true,
        }
    }

    /// A new stream begins on the same connection (after SASL success, RFC 7395 §3.5).
    pub fn restart(&mut self) {
        self.awaiting_open = true;
    }

    /// What one text message says: an event, or nothing (whitespace only).
    pub fn read(&mut self, text: &str) -> Result<Option<StreamEvent>, StreamError> {
        // The parser drops text between stanzas (a TCP stream's keepalives): here it is not XML.
        let trimmed = text.trim();
        let element_like = trimmed.starts_with('<') && trimmed.ends_with('>');
        if !trimmed.is_empty() && !element_like {
            return Err(not_one_element());
        }
        let mut events = self.parser.feed(text.as_bytes())?.into_iter();
        if !self.parser.between_stanzas() {
            return Err(not_one_element());
        }
        let event = match (events.next(), events.next()) {
            (None, _) => return Ok(None),
            (Some(StreamEvent::Element(element)), None) => self.framed(element)?,
            // Two elements, or our own root closed by the client.
            _ => return Err(not_one_element()),
        };
        Ok(Some(event))
    }

    fn framed(&mut self, element: Element) -> Result<StreamEvent, StreamError> {
        match (element.name(), element.ns().as_str()) {
            ("open", FRAMING_NS) if self.awaiting_open => {
                self.awaiting_open = false;
                let attr = |name: &str| element.attr(name).map(str::to_string);
                Ok(StreamEvent::Open(StreamHeader {
                    namespace: Some(CLIENT_NS.into()),
                    to: attr("to"),
                    from: attr("from"),
                    id: attr("id"),
                    version: attr("version"),
                }))
            }
            ("open", FRAMING_NS) => Err(StreamError::HeaderInsideStream),
            _ if self.awaiting_open => Err(StreamError::OpenMissing),
            ("close", FRAMING_NS) => Ok(StreamEvent::Close),
            _ => Ok(StreamEvent::Element(element)),
        }
    }
}

fn not_one_element() -> StreamError {
    StreamError::NotWellFormed("a WebSocket message holds exactly one whole element".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str =
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";

    #[test]
    fn open_stanzas_close_and_a_restart() {
        let mut reader = FramedReader::new(1 << 16);
        let Ok(Some(StreamEvent::Open(header))) = reader.read(OPEN) else {
            panic!("no open")
        };
        assert_eq!(header.to.as_deref(), Some("localhost"));
        assert_eq!(header.namespace.as_deref(), Some("jabber:client"));
        assert_eq!(reader.read(" \n"), Ok(None), "whitespace says nothing");
        let Ok(Some(StreamEvent::Element(message))) =
            reader.read("<message xmlns='jabber:client' to='a@b'><body>hi</body></message>")
        else {
            panic!("no stanza")
        };
        assert_eq!(
            (message.name(), message.ns().as_str()),
            ("message", "jabber:client")
        );
        assert_eq!(reader.read(OPEN), Err(StreamError::HeaderInsideStream));
        let mut reader = FramedReader::new(1 << 16);
        reader.read(OPEN).unwrap();
        reader.restart();
        assert!(matches!(reader.read(OPEN), Ok(Some(StreamEvent::Open(_)))));
        assert_eq!(
            reader.read("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            Ok(Some(StreamEvent::Close))
        );
    }

    #[test]
    fn a_message_is_one_whole_element_after_the_open() {
        let mut reader = FramedReader::new(1 << 16);
        assert_eq!(
            reader.read("<message xmlns='jabber:client'/>"),
            Err(StreamError::OpenMissing)
        );
        for bad in [
            "<message xmlns='jabber:client'><body>half",
            "<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>",
            "</stream:stream>",
            "not xml at all",
        ] {
            let mut reader = FramedReader::new(1 << 16);
            reader.read(OPEN).unwrap();
            assert!(
                matches!(reader.read(bad), Err(StreamError::NotWellFormed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_stanza_limit_holds_per_message() {
        let mut reader = FramedReader::new(1024);
        reader.read(OPEN).unwrap();
        let big = format!(
            "<message xmlns='jabber:client'><body>{}</body></message>",
            "x".repeat(2000)
        );
        assert_eq!(reader.read(&big), Err(StreamError::TooLarge(1024)));
    }
}
