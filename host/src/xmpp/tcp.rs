//! The client listener on TCP (RFC 6120): an XML stream on a byte stream, STARTTLS on it, and
//! each connection's bytes read at the configured rate.

use std::net::SocketAddr;
use std::sync::Arc;

use minidom::Element;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::c2s::{C2s, CLIENT_NS};
use super::connection;
use super::stream::StreamEvent;
use super::throttle::Throttled;
use super::transport::{ClientTransport, EventSource, Framing, StreamSink};
use super::wire::{prefixed, stream_header, ByteStream, ReadError, XmlReader, STREAM_CLOSE};
use crate::outbound::Outbound;

/// Accepts clients until the task is dropped.
pub async fn listen(listener: TcpListener, c2s: Arc<C2s>) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                tokio::spawn(serve(c2s.clone(), socket, peer));
            }
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "accepting a client failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(c2s: Arc<C2s>, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    // Beneath TLS: every byte the client sends counts, encrypted or not.
    let socket: Box<dyn ByteStream> = match c2s.read_rate {
        Some(rate) => Box::new(Throttled::new(socket, rate)),
        None => Box::new(socket),
    };
    let transport = TcpTransport {
        reader: XmlReader::new(socket, c2s.max_stanza_bytes),
        out: XmlOut::default(),
        tls: false,
    };
    connection::serve(c2s, transport, peer).await;
}

/// A client connection on TCP, while it negotiates.
pub struct TcpTransport {
    reader: XmlReader<Box<dyn ByteStream>>,
    out: XmlOut,
    tls: bool,
}

/// The bound session's halves.
pub struct TcpReader(XmlReader<ReadHalf<Box<dyn ByteStream>>>);

pub struct TcpWriter {
    io: WriteHalf<Box<dyn ByteStream>>,
    out: XmlOut,
}

impl EventSource for TcpTransport {
    async fn next(&mut self) -> Result<StreamEvent, ReadError> {
        self.reader.next().await
    }
}

impl EventSource for TcpReader {
    async fn next(&mut self) -> Result<StreamEvent, ReadError> {
        self.0.next().await
    }
}

impl ClientTransport for TcpTransport {
    type Reader = TcpReader;
    type Writer = TcpWriter;

    fn secure(&self) -> bool {
        self.tls
    }

    fn offers_starttls(&self) -> bool {
        !self.tls
    }

    async fn start_tls(self, config: Arc<ServerConfig>) -> std::io::Result<TcpTransport> {
        let max_stanza_bytes = self.reader.max_stanza_bytes();
        let secured = TlsAcceptor::from(config)
            .accept(self.reader.into_inner())
            .await?;
        Ok(TcpTransport {
            reader: XmlReader::new(Box::new(secured), max_stanza_bytes),
            out: self.out,
            tls: true,
        })
    }

    fn restart(&mut self) {
        self.reader.restart();
    }

    fn split(self) -> (TcpReader, TcpWriter) {
        let (reader, io) = self.reader.split();
        (TcpReader(reader), TcpWriter { io, out: self.out })
    }
}

impl StreamSink for TcpTransport {
    type Framing = XmlOut;

    fn framing(&mut self) -> &mut XmlOut {
        &mut self.out
    }

    fn queued_bytes(&self) -> usize {
        self.out.0.len()
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush(self.reader.get_mut()).await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.reader.get_mut().shutdown().await
    }
}

impl StreamSink for TcpWriter {
    type Framing = XmlOut;

    fn framing(&mut self) -> &mut XmlOut {
        &mut self.out
    }

    fn queued_bytes(&self) -> usize {
        self.out.0.len()
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush(&mut self.io).await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.io.shutdown().await
    }
}

/// The text queued for the socket: whatever waits leaves in one write.
#[derive(Default)]
pub struct XmlOut(String);

impl Framing for XmlOut {
    fn header(&mut self, domain: &str, id: &str) {
        self.0.push_str(&stream_header(CLIENT_NS, domain, id));
    }

    fn stream_element(&mut self, element: &Element) {
        self.0.push_str(&prefixed(element, false));
    }

    fn element(&mut self, element: &Element) {
        self.0.push_str(&String::from(element));
    }

    fn stanza(&mut self, stanza: &Outbound) {
        stanza.write(&mut self.0);
    }

    fn close(&mut self) {
        self.0.push_str(STREAM_CLOSE);
    }
}

impl XmlOut {
    async fn flush(&mut self, io: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
        io.write_all(self.0.as_bytes()).await?;
        self.0.clear();
        Ok(())
    }
}
