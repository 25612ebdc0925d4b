//! The MUC logic (XEP-0045): an ordinary Rust library over the [`host::Host`] trait, compiled to
//! a WebAssembly component by the thin binding layer in `bindings.rs`, and natively for tests.
//!
//! The plugin keeps no state of its own between calls: rooms, affiliations and occupants live in
//! the host's store, in the layout `keys` defines (see `wit/STORAGE.md`).

pub mod host;
pub mod service;

mod affiliation;
mod errors;
mod features;
mod join;
mod keys;
mod muc_user;
mod occupant;
mod room;

#[cfg(target_arch = "wasm32")]
mod bindings;

#[cfg(test)]
mod memory_host;

pub use service::{Muc, Settings};
