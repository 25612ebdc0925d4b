//! XMPP on the wire: the stream parser, the client listener and the component link.

pub mod c2s;
pub mod component;
pub mod stream;
pub mod throttle;
pub mod tls;
pub mod wire;
