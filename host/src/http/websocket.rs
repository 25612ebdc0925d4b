//! `/xmpp-websocket`: the WebSocket handshake (RFC 6455) with the `xmpp` subprotocol
//! (RFC 7395 §3.1), then the connection is a client stream like a TCP one (`xmpp::websocket`).

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::listener::Peer;
use super::origin::OriginPolicy;
use super::WEBSOCKET_PATH;
use crate::xmpp::c2s::C2s;
use crate::xmpp::connection;
use crate::xmpp::websocket::{max_message_bytes, WebSocketTransport, SUBPROTOCOL};

#[derive(Clone)]
struct Endpoint {
    c2s: Arc<C2s>,
    origins: Arc<OriginPolicy>,
}

pub fn routes(c2s: Arc<C2s>, origins: OriginPolicy) -> Router {
    let origins = Arc::new(origins);
    Router::new()
        .route(WEBSOCKET_PATH, get(upgrade))
        .with_state(Endpoint { c2s, origins })
}

async fn upgrade(
    State(Endpoint { c2s, origins }): State<Endpoint>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origins.allows(&headers, peer.scheme()) {
        tracing::info!(peer = %peer.address, origin = ?headers.get(ORIGIN), "WebSocket refused: a page from another origin");
        let text = "pages from this origin may not use this server's WebSocket endpoint\n";
        return (StatusCode::FORBIDDEN, text).into_response();
    }
    let asks_for_xmpp = upgrade
        .requested_protocols()
        .any(|protocol| protocol.as_bytes() == SUBPROTOCOL.as_bytes());
    if !asks_for_xmpp {
        let text = "this endpoint speaks the WebSocket subprotocol `xmpp` (RFC 7395)\n";
        return (StatusCode::BAD_REQUEST, text).into_response();
    }
    // Kept from eavesdroppers: through HTTPS, or never leaving the machine (a browser on it,
    // or a TLS proxy in front).
    let secure = peer.tls || peer.address.ip().is_loopback();
    let max_message = max_message_bytes(c2s.max_stanza_bytes);
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            let transport = WebSocketTransport::new(socket, c2s.max_stanza_bytes, secure);
            connection::serve(c2s, transport, peer.address)
        })
}
