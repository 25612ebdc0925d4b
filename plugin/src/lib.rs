//! The MUC logic (XEP-0045): an ordinary Rust library over the [`host::Host`] trait, compiled to
//! a WebAssembly component by the thin binding layer in `bindings.rs`, and natively for tests.
//!
//! The plugin keeps no state of its own between calls: rooms, affiliations and occupants live in
//! the host's store, in the layout `keys` defines (see `wit/STORAGE.md`). The core (`service`
//! dispatch, `presence`, `groupchat`, `owner`...) fires events that the room features in
//! `features/` answer, one module per feature.

pub mod host;
pub mod service;

mod adhoc;
mod admin;
mod affiliation;
mod announce;
mod commands;
mod config;
mod destroy;
mod disco;
mod errors;
mod event;
mod extensions;
mod features;
mod form;
mod groupchat;
mod history_migration;
mod keys;
mod muc_user;
mod occupant;
mod owner;
mod permissions;
mod presence;
mod private_message;
mod room;
mod room_index;
mod rules;
mod shutdown;
mod software_version;
mod xml;

#[cfg(target_arch = "wasm32")]
mod bindings;

#[cfg(test)]
mod memory_host;

pub use service::{GuestRooms, Muc, Settings};
