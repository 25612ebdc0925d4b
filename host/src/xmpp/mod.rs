//! XMPP on the wire: the stream parser, the client service over its transports (TCP and
//! WebSocket; the layers a client stream goes through are listed in `c2s.rs`), and the component link.

pub mod authentication;
pub mod binding;
pub mod c2s;
pub mod component;
pub mod connection;
pub mod delivery;
pub mod detached;
pub mod framing;
pub mod negotiation;
pub mod registration;
pub mod resumption;
pub mod session;
pub mod stream;
pub mod stream_management;
pub mod tcp;
pub mod throttle;
pub mod tls;
pub mod transport;
pub mod websocket;
pub mod wire;
