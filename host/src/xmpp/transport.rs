//! What a client stream runs over, seen from the stream's rules: where its events come from and
//! how what the server says is framed. TCP (an XML stream on a byte stream, `tcp.rs`) and
//! WebSocket (one element per text frame, RFC 7395, `websocket.rs`) implement it, so that
//! negotiation, SASL, registration and the session are written once for both.

use std::future::Future;
use std::sync::Arc;

use minidom::Element;
use tokio_rustls::rustls::ServerConfig;
use xmpp_parsers::stream_error::StreamError;
use xmpp_parsers::stream_features::StreamFeatures;

use super::stream::StreamEvent;
use super::wire::ReadError;
use crate::outbound::Outbound;

/// The client's side: its stream header, its top-level elements, the end of its stream.
pub trait EventSource: Send {
    fn next(&mut self) -> impl Future<Output = Result<StreamEvent, ReadError>> + Send;
}

/// How the server's side of a client stream is written on one transport: as text on a byte
/// stream (TCP) or as one WebSocket message per element.
pub trait Framing: Send {
    /// Our stream header (RFC 6120 §4.7, RFC 7395 §3.4).
    fn header(&mut self, domain: &str, id: &str);
    /// A top-level element of the streams namespace (`<stream:features>`, `<stream:error>`),
    /// written with the `stream:` prefix, which clients look for.
    fn stream_element(&mut self, element: &Element);
    /// A top-level element other than a routed stanza (SASL, a reply during negotiation, stream
    /// management), carrying its own namespace.
    fn element(&mut self, element: &Element);
    /// A stanza for a bound session.
    fn stanza(&mut self, stanza: &Outbound);
    /// The end of the stream.
    fn close(&mut self);
}

/// The server's side of a client stream: what is queued in the transport's [`Framing`] leaves
/// with the next [`flush`](StreamSink::flush), in order.
pub trait StreamSink: Send {
    type Framing: Framing;

    fn framing(&mut self) -> &mut Self::Framing;
    /// Bytes queued and not yet flushed.
    fn queued_bytes(&self) -> usize;
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Ends the connection once the last flush is out.
    fn shutdown(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    fn header(&mut self, domain: &str, id: &str) {
        self.framing().header(domain, id);
    }

    fn features(&mut self, features: StreamFeatures) {
        let offers_sasl = !features.sasl_mechanisms.is_empty();
        let mut element = Element::from(features);
        // xmpp-parsers writes `<mechanisms/>` even when empty: a stream that offers no SASL
        // (before STARTTLS, after authentication) must not seem to offer it with no mechanism.
        if !offers_sasl {
            element.remove_child("mechanisms", xmpp_parsers::ns::SASL);
        }
        self.framing().stream_element(&element);
    }

    fn element(&mut self, element: impl Into<Element>) {
        self.framing().element(&element.into());
    }

    fn stanza(&mut self, stanza: &Outbound) {
        self.framing().stanza(stanza);
    }

    /// A stream error (RFC 6120 §4.9), then the end of the stream.
    fn error(&mut self, error: StreamError) {
        let framing = self.framing();
        framing.stream_element(&error.into());
        framing.close();
    }

    fn close(&mut self) {
        self.framing().close();
    }
}

/// One client connection during negotiation; split into its two halves for the session.
pub trait ClientTransport: EventSource + StreamSink + Sized + 'static {
    type Reader: EventSource + 'static;
    type Writer: StreamSink + 'static;

    /// Whether what is sent is already kept from eavesdroppers (TLS below the stream).
    fn secure(&self) -> bool;
    /// Whether STARTTLS may be offered (RFC 6120 §5): TCP before its TLS, never WebSocket.
    fn offers_starttls(&self) -> bool;
    /// TLS under the stream, after `<proceed/>` was flushed; the stream restarts on it.
    fn start_tls(
        self,
        config: Arc<ServerConfig>,
    ) -> impl Future<Output = std::io::Result<Self>> + Send;
    /// A new stream begins on the same connection (after SASL success, RFC 6120 §4.3.3).
    fn restart(&mut self);
    fn split(self) -> (Self::Reader, Self::Writer);
}
