//! The MUC host: runs the MUC plugin component under limits, keeps its data, routes its stanzas,
//! and plays scansion scripts against it (the bundled test host).

pub mod check;
pub mod clock;
pub mod router;
pub mod runtime;
pub mod scansion;
pub mod server;
pub mod service;
pub mod storage;
pub mod testhost;
