//! XEP-0156 discovery: `/.well-known/host-meta` (XRD) and `host-meta.json` (JRD) name the
//! WebSocket endpoint, at the host the client asked for, so a web client given only the
//! domain's web address finds it. Readable from any page (CORS), as XEP-0156 §3 asks.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE, HOST};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::listener::Peer;
use super::WEBSOCKET_PATH;
use crate::xmpp::wire::escape;

const WEBSOCKET_REL: &str = "urn:xmpp:alt-connections:websocket";

pub fn routes(local: SocketAddr) -> Router {
    Router::new()
        .route("/.well-known/host-meta", get(xrd))
        .route("/.well-known/host-meta.json", get(jrd))
        .with_state(local)
}

/// The endpoint's URL: at the `Host` the request named, else where the server listens; `wss`
/// when asked over HTTPS.
pub(super) fn websocket_url(headers: &HeaderMap, local: SocketAddr, peer: Peer) -> String {
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .map_or_else(|| local.to_string(), str::to_string);
    format!("{}://{host}{WEBSOCKET_PATH}", peer.0.websocket_scheme())
}

async fn xrd(
    State(local): State<SocketAddr>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let body = format!(
        "<?xml version='1.0' encoding='utf-8'?>\n\
         <XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  \
         <Link rel='{WEBSOCKET_REL}' href='{}'/>\n</XRD>\n",
        escape(&websocket_url(&headers, local, peer))
    );
    (
        [
            (CONTENT_TYPE, "application/xrd+xml; charset=utf-8"),
            (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
}

async fn jrd(
    State(local): State<SocketAddr>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let body = serde_json::json!({
        "links": [{ "rel": WEBSOCKET_REL, "href": websocket_url(&headers, local, peer) }]
    });
    (
        [
            (CONTENT_TYPE, "application/json"),
            (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body.to_string(),
    )
}
