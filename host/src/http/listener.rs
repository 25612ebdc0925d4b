//! The HTTP server's connections: accepted as the TCP listener's, read at the same rate.

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::TcpListener;

use crate::xmpp::throttle::{ReadRate, Throttled};
use crate::xmpp::wire::ByteStream;

pub struct Throttling {
    listener: TcpListener,
    rate: Option<ReadRate>,
}

impl Throttling {
    pub fn new(listener: TcpListener, rate: Option<ReadRate>) -> Throttling {
        Throttling { listener, rate }
    }
}

impl Listener for Throttling {
    type Io = Box<dyn ByteStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Box<dyn ByteStream>, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let io: Box<dyn ByteStream> = match self.rate {
                        Some(rate) => Box::new(Throttled::new(socket, rate)),
                        None => Box::new(socket),
                    };
                    return (io, peer);
                }
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The client's address, for handlers.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, Throttling>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Throttling>) -> Peer {
        Peer(*stream.remote_addr())
    }
}
