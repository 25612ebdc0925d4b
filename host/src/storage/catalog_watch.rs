//! How an instance sharing the store learns that another installed, replaced or removed a room
//! extension: every batch that writes a catalog entry also counts up the catalog's generation
//! (a one-row table, [`SCHEMA`]), and each heartbeat (see [`super::lease`]) reads the generation
//! in the same round trip as the beat. The core compares it with the generation of the catalog it
//! last read, between batches: an atomic load, no database round trip, until the catalog
//! actually changes. A generation only goes up, so no change is missed however close two come.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The generation's table, created by the PostgreSQL store's migrations.
pub const SCHEMA: &str = "
CREATE TABLE catalog_generation (generation BIGINT NOT NULL);
INSERT INTO catalog_generation VALUES (0);
";

/// Counts a change of the catalog, inside the batch that makes it.
pub const BUMP: &str = "UPDATE catalog_generation SET generation = generation + 1";

/// The generation, as a sub-select.
pub const GENERATION: &str = "(SELECT generation FROM catalog_generation)";

/// The generation the heartbeat read last, shared by the heartbeat (which writes it) and the
/// store (which reads it).
#[derive(Clone, Default)]
pub struct CatalogWatch {
    generation: Arc<AtomicU64>,
}

impl CatalogWatch {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What a beat read.
    pub fn saw(&self, generation: i64) {
        self.generation
            .store(u64::try_from(generation).unwrap_or(0), Ordering::Release);
    }
}
