//! The MUC host: runs the MUC plugin component under limits, keeps its data, routes its stanzas
//! (its own client listener, or a component link to an existing server), and plays scansion
//! scripts against it (the bundled test host, in-process or over the network).

pub mod adhoc;
pub mod auth;
pub mod check;
pub mod clock;
pub mod config;
pub mod control;
pub mod core;
pub mod core_event;
pub mod extensions;
pub mod http;
pub mod inbox;
pub mod lending;
pub mod message_rate;
pub mod metrics;
pub mod outbound;
pub mod router;
pub mod runtime;
pub mod scansion;
pub mod serve;
pub mod server;
pub mod service;
pub mod stanza_error;
pub mod storage;
pub mod swap;
pub mod testhost;
pub mod token_bucket;
pub mod wasm;
pub mod xmpp;
