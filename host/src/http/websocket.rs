//! `/xmpp-websocket`: the WebSocket handshake (RFC 6455) with the `xmpp` subprotocol
//! (RFC 7395 §3.1), then the connection is a client stream like a TCP one (`xmpp::websocket`).

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::listener::Peer;
use super::WEBSOCKET_PATH;
use crate::xmpp::c2s::C2s;
use crate::xmpp::connection;
use crate::xmpp::websocket::{max_message_bytes, WebSocketTransport, SUBPROTOCOL};

pub fn routes(c2s: Arc<C2s>) -> Router {
    Router::new()
        .route(WEBSOCKET_PATH, get(upgrade))
        .with_state(c2s)
}

async fn upgrade(
    State(c2s): State<Arc<C2s>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let asks_for_xmpp = upgrade
        .requested_protocols()
        .any(|protocol| protocol.as_bytes() == SUBPROTOCOL.as_bytes());
    if !asks_for_xmpp {
        let text = "this endpoint speaks the WebSocket subprotocol `xmpp` (RFC 7395)\n";
        return (StatusCode::BAD_REQUEST, text).into_response();
    }
    // No TLS below this server's HTTP yet: a connection is kept from eavesdroppers only when
    // it never leaves the machine (a browser on it, or a TLS proxy in front).
    let secure = peer.ip().is_loopback();
    let max_message = max_message_bytes(c2s.max_stanza_bytes);
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            let transport = WebSocketTransport::new(socket, c2s.max_stanza_bytes, secure);
            connection::serve(c2s, transport, peer)
        })
}
