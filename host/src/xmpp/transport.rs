//! What a client stream runs over, seen from the stream's rules: where its events come from and
//! how what the server says is framed. TCP (an XML stream on a byte stream, `tcp.rs`) and
//! WebSocket (one element per text frame, RFC 7395, `websocket.rs`) implement it, so that
//! negotiation, SASL, registration and the session are written once for both.

use std::future::Future;
use std::sync::Arc;

use tokio_rustls::rustls::ServerConfig;

use super::stream::StreamEvent;
use super::wire::ReadError;
use crate::outbound::Outbound;

/// The client's side: its stream header, its top-level elements, the end of its stream.
pub trait EventSource: Send {
    fn next(&mut self) -> impl Future<Output = Result<StreamEvent, ReadError>> + Send;
}

/// The server's side, in the transport's framing. What is queued leaves with the next
/// [`flush`](StreamSink::flush), in order.
pub trait StreamSink: Send {
    /// Our stream header (RFC 6120 §4.7, RFC 7395 §3.4).
    fn header(&mut self, domain: &str, id: &str);
    /// `<stream:features>` holding `children`.
    fn features(&mut self, children: &str);
    /// A top-level element other than a routed stanza (SASL, a reply during negotiation),
    /// carrying its own namespace.
    fn element(&mut self, xml: &str);
    /// A stanza for a bound session.
    fn stanza(&mut self, stanza: &Outbound);
    /// A stream error (RFC 6120 §4.9), then the end of the stream.
    fn error(&mut self, condition: &str, text: &str) {
        self.error_with(condition, text, "");
    }
    /// As [`error`](StreamSink::error), with an application-specific condition (`application`:
    /// an element in its own namespace, RFC 6120 §4.9.4).
    fn error_with(&mut self, condition: &str, text: &str, application: &str);
    /// The end of the stream.
    fn close(&mut self);
    /// Bytes queued and not yet flushed.
    fn queued_bytes(&self) -> usize;
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Ends the connection once the last flush is out.
    fn shutdown(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
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
