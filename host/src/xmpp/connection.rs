//! One client connection from its first byte to its end, whatever its transport: negotiation
//! within its time limit, then the bound session.

use std::net::SocketAddr;
use std::sync::Arc;

use super::c2s::{C2s, Ended, NEGOTIATION_TIMEOUT};
use super::negotiation::negotiate;
use super::session;
use super::transport::ClientTransport;

pub async fn serve<T: ClientTransport>(c2s: Arc<C2s>, transport: T, peer: SocketAddr) {
    c2s.metrics.connections_opened.inc();
    tracing::info!(%peer, "client connected");
    let negotiated =
        tokio::time::timeout(NEGOTIATION_TIMEOUT, negotiate(&c2s, transport, peer.ip())).await;
    let Ok(negotiated) = negotiated else {
        tracing::info!(%peer, "client took too long to log in; dropped");
        return;
    };
    match negotiated {
        Ok((transport, start)) => session::run(c2s, transport, start, peer).await,
        Err(Ended::Read(error)) => tracing::info!(%peer, %error, "client left before binding"),
        Err(Ended::Io(error)) => tracing::info!(%peer, %error, "client connection failed"),
        Err(Ended::Refused(error)) => tracing::info!(%peer, %error, "client stream refused"),
    }
}
