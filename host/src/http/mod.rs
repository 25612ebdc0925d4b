//! The HTTP server of `muc-host serve` (axum on hyper): `/metrics` always; in bundled mode also
//! XEP-0156 discovery (`host_meta.rs`), XMPP over WebSocket (`websocket.rs`), whose
//! connections are client streams like those of the TCP listener, and the web client: its
//! pages (`pages.rs`, rooms asked through `room_info.rs`) and files (`web_client.rs`).

mod host_meta;
mod listener;
mod origin;
mod pages;
mod room_info;
mod web_client;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use jid::BareJid;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;

use crate::inbox::Lane;
use crate::metrics::Metrics;
use crate::xmpp::c2s::C2s;
use crate::xmpp::throttle::ReadRate;

pub use listener::Peer;
pub use origin::OriginPolicy;
pub use web_client::WebClient;

/// The path of the WebSocket endpoint.
pub const WEBSOCKET_PATH: &str = "/xmpp-websocket";

/// What the metrics endpoint needs: the registry, and a lane to ask the core for its gauges.
#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    core: Lane,
}

/// What the web pages tell the browser and ask the core.
pub struct Site {
    pub domain: String,
    pub muc_domain: String,
    /// Where guests log in (SASL ANONYMOUS), if anywhere.
    pub guest_domain: Option<String>,
    /// Whether the login form offers to create an account (XEP-0077).
    pub registration: bool,
    /// None: not installed (the pages say so).
    pub web_client: Option<WebClient>,
    /// Where the server listens, for a request that names no `Host`.
    pub local: SocketAddr,
    /// The pages' own lane to the core (rooms' disco#info).
    pub core: Lane,
}

impl Site {
    /// The room a page names: its localpart, or its bare JID at the MUC domain.
    fn room(&self, named: &str) -> Option<BareJid> {
        let jid = if named.contains('@') {
            BareJid::new(named).ok()?
        } else {
            BareJid::new(&format!("{named}@{}", self.muc_domain)).ok()?
        };
        (jid.node().is_some() && jid.domain().as_str() == self.muc_domain).then_some(jid)
    }
}

/// Everything bundled mode serves over HTTP; `site.local` is where it listens.
pub fn bundled(
    metrics: Arc<Metrics>,
    core: Lane,
    c2s: Arc<C2s>,
    origins: OriginPolicy,
    site: Site,
) -> Router {
    let files = site.web_client.clone().map(WebClient::routes);
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { metrics, core })
        .merge(host_meta::routes(site.local))
        .merge(websocket::routes(c2s, origins))
        .merge(pages::routes(Arc::new(site)));
    match files {
        Some(files) => router.merge(files),
        None => router,
    }
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
