//! What every WebAssembly sandbox of the host (the MUC plugin, the room extensions) shares: the
//! plugin's contract as Rust types, time budgets in epoch ticks, the memory cap, and the cache
//! of compiled components.

mod budget;
mod compile_cache;
mod epoch_ticker;
mod memory_cap;
pub mod plugin_world;

pub use budget::{budget_ticks, EPOCH_TICK};
pub use compile_cache::compile_cached;
pub use epoch_ticker::spawn_epoch_ticker;
pub use memory_cap::MemoryCap;
