//! The client listener on TCP (RFC 6120): an XML stream on a byte stream, STARTTLS on it, and
//! each connection's bytes read at the configured rate.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::c2s::{C2s, CLIENT_NS};
use super::connection;
use super::stream::StreamEvent;
use super::throttle::Throttled;
use super::transport::{ClientTransport, EventSource, StreamSink};
use super::wire::{stream_error_with, stream_header, ByteStream, ReadError, XmlReader};
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
    fn header(&mut self, domain: &str, id: &str) {
        self.out.0.push_str(&stream_header(CLIENT_NS, domain, id));
    }

    fn features(&mut self, children: &str) {
        self.out.features(children);
    }

    fn element(&mut self, xml: &str) {
        self.out.0.push_str(xml);
    }

    fn stanza(&mut self, stanza: &Outbound) {
        stanza.write(&mut self.out.0);
    }

    fn error_with(&mut self, condition: &str, text: &str, application: &str) {
        self.out
            .0
            .push_str(&stream_error_with(condition, text, application));
    }

    fn close(&mut self) {
        self.out.close();
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
    fn header(&mut self, domain: &str, id: &str) {
        self.out.0.push_str(&stream_header(CLIENT_NS, domain, id));
    }

    fn features(&mut self, children: &str) {
        self.out.features(children);
    }

    fn element(&mut self, xml: &str) {
        self.out.0.push_str(xml);
    }

    fn stanza(&mut self, stanza: &Outbound) {
        stanza.write(&mut self.out.0);
    }

    fn error_with(&mut self, condition: &str, text: &str, application: &str) {
        self.out
            .0
            .push_str(&stream_error_with(condition, text, application));
    }

    fn close(&mut self) {
        self.out.close();
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
struct XmlOut(String);

impl XmlOut {
    fn features(&mut self, children: &str) {
        self.0.push_str("<stream:features>");
        self.0.push_str(children);
        self.0.push_str("</stream:features>");
    }

    fn close(&mut self) {
        self.0.push_str("</stream:stream>");
    }

    async fn flush(&mut self, io: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
        io.write_all(self.0.as_bytes()).await?;
        self.0.clear();
        Ok(())
    }
}
