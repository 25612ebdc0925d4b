//! The bundled client service (RFC 6120): what every client connection shares, whichever
//! transport it came over (TCP, `tcp.rs`; WebSocket, `websocket.rs`), and the limits that hold
//! for all of them. A connection negotiates (`negotiation.rs`: STARTTLS where the transport has
//! it, SASL in `authentication.rs`, XEP-0077 in `registration.rs`, resource binding in
//! `binding.rs`), then runs its session (`session.rs`), whose stanzas go to the core thread.
//! Stream management (XEP-0198) is in `stream_management.rs`; sessions that may be resumed are
//! in `resumption.rs`, and wait for it, once their connection dropped, in `detached.rs`.
//!
//! TLS is required before authentication unless the service runs with `--insecure-auth`.

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::ServerConfig;
use xmpp_parsers::stream_error::StreamError;

use super::resumption::Resumption;
use super::throttle::ReadRate;
use super::wire::ReadError;
use crate::auth::{Accounts, AuthPolicy, AuthThrottle};
use crate::inbox::Lanes;
use crate::metrics::Metrics;

pub const CLIENT_NS: &str = "jabber:client";
/// Failed SASL attempts before the stream is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;
/// Stanzas a session may have waiting for its connection: a client that reads slower than it
/// is written to is disconnected rather than allowed to grow the server's memory.
pub const MAX_QUEUED_STANZAS: usize = 10_000;
/// Stanzas waiting for a session's connection past which its own stanzas are not read: a client
/// that asks for more than it reads (a flood of archive queries, say) is served as fast as it
/// reads, well before the bound above cuts it off. Far above what a client that keeps up has.
pub const PAUSE_READING_AT: usize = 1_000;
/// A client whose connection takes no bytes for this long is gone, whatever TCP thinks.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time from connecting to a bound resource.
pub const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(60);

/// What every client connection shares.
pub struct C2s {
    pub domain: String,
    pub tls: Arc<ServerConfig>,
    pub accounts: Arc<Accounts>,
    /// Failed authentications by account and by address, to slow password guessing.
    pub auth_throttle: AuthThrottle,
    pub insecure_auth: bool,
    pub registration: bool,
    /// Where guests (SASL ANONYMOUS, XEP-0175) are; None: no guests.
    pub guest_domain: Option<String>,
    pub max_stanza_bytes: usize,
    /// How fast each connection's bytes are read (`None`: as fast as they come).
    pub read_rate: Option<ReadRate>,
    /// Each session opens its own lane into the core's inbox.
    pub core: Lanes,
    pub metrics: Arc<Metrics>,
    /// Held by every session's writer: the count of writers still flushing at shutdown.
    pub writers: Arc<()>,
    /// The sessions a new stream may resume (XEP-0198), and for how long after a drop.
    pub resumption: Resumption,
}

impl C2s {
    /// The SASL rules for a stream, secure (under TLS) or not, opened to `stream_domain` (the
    /// service's domain, or the guest domain: guests only).
    pub fn policy(&self, secure: bool, stream_domain: &str) -> AuthPolicy {
        AuthPolicy {
            domain: self.domain.clone(),
            tls: secure,
            insecure: self.insecure_auth,
            guest_domain: self.guest_domain.clone(),
            accounts: stream_domain == self.domain,
        }
    }

    /// Whether a client may open a stream to `domain`: the service's, or its guests'.
    pub fn serves(&self, domain: &str) -> bool {
        domain == self.domain || self.guest_domain.as_deref() == Some(domain)
    }

    pub fn may_register(&self, secure: bool) -> bool {
        self.registration && (secure || self.insecure_auth)
    }
}

/// Why negotiation ended without a session.
pub enum Ended {
    Read(ReadError),
    /// We closed the stream, with this stream error.
    Refused(StreamError),
    Io(std::io::Error),
}

impl From<std::io::Error> for Ended {
    fn from(error: std::io::Error) -> Ended {
        Ended::Io(error)
    }
}
