//! The HTTP server's connections: accepted as the TCP listener's, read at the same rate, and for
//! `--https` taken through TLS with the client listener's certificate. Handshakes run beside
//! the accepting, so one slow client does not hold up the next.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::xmpp::throttle::{ReadRate, Throttled};
use crate::xmpp::wire::ByteStream;

/// Time a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Throttling {
    listener: TcpListener,
    rate: Option<ReadRate>,
    tls: Option<TlsAcceptor>,
    handshakes: JoinSet<Option<(Box<dyn ByteStream>, SocketAddr)>>,
}

impl Throttling {
    /// `tls`: the server's TLS configuration, for HTTPS; it is offered HTTP/1.1 only, all the
    /// server speaks.
    pub fn new(
        listener: TcpListener,
        rate: Option<ReadRate>,
        tls: Option<Arc<ServerConfig>>,
    ) -> Throttling {
        let tls = tls.map(|config| {
            let mut config = ServerConfig::clone(&config);
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            TlsAcceptor::from(Arc::new(config))
        });
        Throttling {
            listener,
            rate,
            tls,
            handshakes: JoinSet::new(),
        }
    }

    fn throttled(&self, socket: tokio::net::TcpStream) -> Box<dyn ByteStream> {
        let _ = socket.set_nodelay(true);
        match self.rate {
            Some(rate) => Box::new(Throttled::new(socket, rate)),
            None => Box::new(socket),
        }
    }
}

impl Listener for Throttling {
    type Io = Box<dyn ByteStream>;
    type Addr = Remote;

    async fn accept(&mut self) -> (Box<dyn ByteStream>, Remote) {
        let tls = self.tls.is_some();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, address)) => {
                        let io = self.throttled(socket);
                        let Some(acceptor) = self.tls.clone() else {
                            return (io, Remote { address, tls });
                        };
                        self.handshakes.spawn(async move {
                            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io));
                            match handshake.await {
                                Ok(Ok(stream)) => Some((Box::new(stream) as Box<dyn ByteStream>, address)),
                                Ok(Err(error)) => {
                                    tracing::info!(%address, %error, "HTTPS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::info!(%address, "HTTPS handshake took too long");
                                    None
                                }
                            }
                        });
                    }
                    Err(error) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::warn!(%error, "accepting an HTTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some((io, address))) = done {
                        return (io, Remote { address, tls });
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Remote> {
        Ok(Remote {
            address: self.listener.local_addr()?,
            tls: self.tls.is_some(),
        })
    }
}

/// Where a connection comes from, and whether it came through TLS.
#[derive(Clone, Copy, Debug)]
pub struct Remote {
    pub address: SocketAddr,
    pub tls: bool,
}

impl Remote {
    /// The scheme of the pages served on this connection.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The scheme of the WebSocket endpoint reached on this connection.
    pub fn websocket_scheme(&self) -> &'static str {
        if self.tls {
            "wss"
        } else {
            "ws"
        }
    }
}

/// The client's side of a connection, for handlers.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Remote);

impl Connected<IncomingStream<'_, Throttling>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Throttling>) -> Peer {
        Peer(*stream.remote_addr())
    }
}
