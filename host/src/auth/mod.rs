//! Client authentication: accounts with salted SCRAM credentials, and the server side of SASL
//! (SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, and ANONYMOUS for guests) for the client listener, and
//! the throttle that slows password guessing.

mod accounts;
mod anonymous;
mod credentials;
mod plain;
mod sasl;
mod scram;
mod step;
mod throttle;

pub use accounts::{AccountError, Accounts};
pub use sasl::{offered, AuthPolicy, Mechanism, SaslExchange};
pub use step::{SaslFailure, Step};
pub use throttle::AuthThrottle;
