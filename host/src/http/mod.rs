//! The HTTP server of `muc-host serve` (axum on hyper): `/metrics` always; in bundled mode also
//! XEP-0156 discovery (`host_meta.rs`) and XMPP over WebSocket (`websocket.rs`), whose
//! connections are client streams like those of the TCP listener.

mod host_meta;
mod listener;
mod origin;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;

use crate::inbox::Lane;
use crate::metrics::Metrics;
use crate::xmpp::c2s::C2s;
use crate::xmpp::throttle::ReadRate;

pub use listener::Peer;
pub use origin::OriginPolicy;

/// The path of the WebSocket endpoint.
pub const WEBSOCKET_PATH: &str = "/xmpp-websocket";

/// What the metrics endpoint needs: the registry, and a lane to ask the core for its gauges.
#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    core: Lane,
}

/// Everything bundled mode serves over HTTP; `local` is where it listens.
pub fn bundled(
    metrics: Arc<Metrics>,
    core: Lane,
    c2s: Arc<C2s>,
    origins: OriginPolicy,
    local: SocketAddr,
) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { metrics, core })
        .merge(host_meta::routes(local))
        .merge(websocket::routes(c2s, origins))
}

/// `--metrics ADDR`, in either mode: `/metrics`, also at `/` (as the exporter always answered).
pub fn metrics_only(metrics: Arc<Metrics>, core: Lane) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(scrape))
        .with_state(Scrape { metrics, core })
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let text = scrape.metrics.scrape(&scrape.core).await;
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(CONTENT_TYPE, kind)], text)
}

/// Serves `router` on `listener` until the task is dropped, through TLS with `tls` (HTTPS);
/// each connection's bytes are read at `read_rate`, as a client connection's on the TCP
/// listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    read_rate: Option<ReadRate>,
    tls: Option<Arc<ServerConfig>>,
) {
    let listener = listener::Throttling::new(listener, read_rate, tls);
    let app = router.into_make_service_with_connect_info::<Peer>();
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "the HTTP server stopped");
    }
}
