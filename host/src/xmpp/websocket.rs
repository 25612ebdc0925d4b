//! Client streams over WebSocket (RFC 7395): one element per text message, `<open/>` and
//! `<close/>` for the stream's ends. Below the stream: no STARTTLS (the transport's own TLS, or
//! none); above it, the same negotiation and session as TCP.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use jid::BareJid;
use minidom::Element;
use tokio_rustls::rustls::ServerConfig;
use xmpp_parsers::websocket::Open;

use super::c2s::CLIENT_NS;
use super::framing::{FramedReader, FRAMING_NS};
use super::stream::{StreamError, StreamEvent};
use super::transport::{ClientTransport, EventSource, Framing, StreamSink};
use super::wire::{prefixed, ReadError};
use crate::outbound::Outbound;

/// The WebSocket subprotocol (RFC 7395 §3.1).
pub const SUBPROTOCOL: &str = "xmpp";

/// Bytes a WebSocket message may have beyond the stanza limit (whitespace around the stanza):
/// within it the stream parser answers an oversized stanza as on TCP; past it the WebSocket
/// layer stops reading it, with the same stream error.
const MESSAGE_SLACK_BYTES: usize = 4096;

pub fn max_message_bytes(max_stanza_bytes: usize) -> usize {
    max_stanza_bytes + MESSAGE_SLACK_BYTES
}

/// A client connection on WebSocket, while it negotiates.
pub struct WebSocketTransport {
    socket: WebSocket,
    inbound: Inbound,
    frames: Frames,
    secure: bool,
}

impl WebSocketTransport {
    /// `secure`: whether the connection is kept from eavesdroppers below the WebSocket.
    pub fn new(socket: WebSocket, max_stanza_bytes: usize, secure: bool) -> WebSocketTransport {
        WebSocketTransport {
            socket,
            inbound: Inbound {
                framing: FramedReader::new(max_stanza_bytes),
                max_stanza_bytes,
            },
            frames: Frames::default(),
            secure,
        }
    }
}

/// The bound session's halves.
pub struct WebSocketReader {
    stream: SplitStream<WebSocket>,
    inbound: Inbound,
}

pub struct WebSocketWriter {
    sink: SplitSink<WebSocket, Message>,
    frames: Frames,
}

impl EventSource for WebSocketTransport {
    async fn next(&mut self) -> Result<StreamEvent, ReadError> {
        self.inbound.next(&mut self.socket).await
    }
}

impl EventSource for WebSocketReader {
    async fn next(&mut self) -> Result<StreamEvent, ReadError> {
        self.inbound.next(&mut self.stream).await
    }
}

impl ClientTransport for WebSocketTransport {
    type Reader = WebSocketReader;
    type Writer = WebSocketWriter;

    fn secure(&self) -> bool {
        self.secure
    }

    fn offers_starttls(&self) -> bool {
        // RFC 7395 §3.7: TLS is the WebSocket's (wss:), never negotiated inside the stream.
        false
    }

    async fn start_tls(self, _config: Arc<ServerConfig>) -> std::io::Result<WebSocketTransport> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no STARTTLS over WebSocket",
        ))
    }

    fn restart(&mut self) {
        self.inbound.framing.restart();
    }

    fn split(self) -> (WebSocketReader, WebSocketWriter) {
        let (sink, stream) = self.socket.split();
        let reader = WebSocketReader {
            stream,
            inbound: self.inbound,
        };
        let writer = WebSocketWriter {
            sink,
            frames: self.frames,
        };
        (reader, writer)
    }
}

impl StreamSink for WebSocketTransport {
    type Framing = Frames;

    fn framing(&mut self) -> &mut Frames {
        &mut self.frames
    }

    fn queued_bytes(&self) -> usize {
        self.frames.bytes
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.frames.flush(&mut self.socket).await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        shutdown(&mut self.socket).await
    }
}

impl StreamSink for WebSocketWriter {
    type Framing = Frames;

    fn framing(&mut self) -> &mut Frames {
        &mut self.frames
    }

    fn queued_bytes(&self) -> usize {
        self.frames.bytes
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.frames.flush(&mut self.sink).await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        shutdown(&mut self.sink).await
    }
}

/// The reading side's state: the framing, across the split.
struct Inbound {
    framing: FramedReader,
    max_stanza_bytes: usize,
}

impl Inbound {
    async fn next(
        &mut self,
        messages: &mut (impl Stream<Item = Result<Message, axum::Error>> + Unpin + Send),
    ) -> Result<StreamEvent, ReadError> {
        loop {
            let message = match messages.next().await {
                None => return Err(ReadError::Eof),
                Some(Ok(message)) => message,
                Some(Err(error)) => return Err(self.failed(error)),
            };
            match message {
                Message::Text(text) => {
                    if let Some(event) = self
                        .framing
                        .read(text.as_str())
                        .map_err(ReadError::Stream)?
                    {
                        return Ok(event);
                    }
                }
                Message::Binary(_) => return Err(ReadError::Stream(StreamError::BinaryMessage)),
                // Answered by the WebSocket layer itself.
                Message::Ping(_) | Message::Pong(_) => {}
                // The client went without `<close/>`: as a dropped TCP connection.
                Message::Close(_) => return Err(ReadError::Eof),
            }
        }
    }

    /// A message over the WebSocket layer's size limit is an oversized stanza; anything else
    /// the layer refuses ends the connection as a network failure would.
    fn failed(&self, error: axum::Error) -> ReadError {
        let error = error.into_inner();
        match error.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Capacity(_)) => {
                ReadError::Stream(StreamError::TooLarge(self.max_stanza_bytes))
            }
            _ => ReadError::Io(std::io::Error::other(error)),
        }
    }
}

/// The messages queued for the client, each one element.
#[derive(Default)]
pub struct Frames {
    queued: Vec<String>,
    bytes: usize,
}

impl Framing for Frames {
    fn header(&mut self, domain: &str, id: &str) {
        let open = Open {
            from: BareJid::new(domain).ok(),
            to: None,
            id: Some(id.to_string()),
            version: Some("1.0".to_string()),
            xml_lang: Some("en".to_string()),
        };
        self.push(String::from(&Element::from(open)));
    }

    fn stream_element(&mut self, element: &Element) {
        self.push(prefixed(element, true));
    }

    fn element(&mut self, element: &Element) {
        self.push(String::from(element));
    }

    /// The stanza with its namespace declared: no stream root declares it here.
    fn stanza(&mut self, stanza: &Outbound) {
        let mut xml = String::new();
        stanza.write(&mut xml);
        xml.insert_str(1 + stanza.name().len(), &format!(" xmlns='{CLIENT_NS}'"));
        self.push(xml);
    }

    fn close(&mut self) {
        self.push(format!("<close xmlns='{FRAMING_NS}'/>"));
    }
}

impl Frames {
    fn push(&mut self, xml: String) {
        self.bytes += xml.len();
        self.queued.push(xml);
    }

    async fn flush(
        &mut self,
        sink: &mut (impl Sink<Message, Error = axum::Error> + Unpin + Send),
    ) -> std::io::Result<()> {
        for xml in self.queued.drain(..) {
            sink.feed(Message::text(xml))
                .await
                .map_err(std::io::Error::other)?;
        }
        self.bytes = 0;
        sink.flush().await.map_err(std::io::Error::other)
    }
}

/// The WebSocket closing handshake, after the stream's `<close/>` (RFC 7395 §3.6).
async fn shutdown(
    sink: &mut (impl Sink<Message, Error = axum::Error> + Unpin + Send),
) -> std::io::Result<()> {
    let close = CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    };
    sink.send(Message::Close(Some(close)))
        .await
        .map_err(std::io::Error::other)?;
    sink.close().await.map_err(std::io::Error::other)
}
