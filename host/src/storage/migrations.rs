//! The schema, created and moved forward by muc-host itself: each backend embeds its numbered
//! migrations (the first is the schema the store had before migrations were counted, written
//! so that it is harmless on such a database) and records in `schema_migrations` the versions
//! applied. A database whose version is newer than the binary's is refused: an older muc-host
//! must not write a layout it does not know.

use anyhow::{bail, Result};

/// What a backend runs migrations with.
pub trait Schema {
    /// Creates `schema_migrations` when missing; the highest version applied (0: none).
    fn version(&mut self) -> Result<u32>;

    /// Runs `sql` and records `version`, in one transaction.
    fn run_migration(&mut self, version: u32, sql: &str) -> Result<()>;
}

/// Brings the schema to the newest of `migrations` (version N is `migrations[N - 1]`).
pub fn migrate(schema: &mut dyn Schema, migrations: &[&str], database: &str) -> Result<()> {
    let known = migrations.len() as u32;
    let version = schema.version()?;
    if version > known {
        bail!(
            "{database} has schema version {version}, newer than this muc-host knows \
             ({known}): it was written by a newer muc-host; run that version (or newer)"
        );
    }
    for (index, sql) in migrations.iter().enumerate().skip(version as usize) {
        let next = index as u32 + 1;
        schema.run_migration(next, sql)?;
        tracing::info!(version = next, "{database}: schema migrated");
    }
    Ok(())
}
