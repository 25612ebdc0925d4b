//! The durable tier on disk: one SQLite database, written once per committed call.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use super::{Map, Writes};

pub struct Sqlite {
    connection: Connection,
}

/// Everything the disk holds, read at start.
pub struct Loaded {
    pub durable: Map,
    pub extensions: Map,
    pub timers: BTreeMap<String, u64>,
    pub meta: BTreeMap<String, String>,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        let connection =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        // WAL with synchronous=FULL: a commit is on disk when it returns, which is what lets the
        // call's stanzas leave.
        // The accounts live in the same file behind their own connection: wait for it, briefly,
        // rather than fail a commit.
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS durable (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS extensions (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS timers (key TEXT PRIMARY KEY, due_ms INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS host_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
        )?;
        Ok(Sqlite { connection })
    }

    pub fn load(&self) -> Result<Loaded> {
        let table = |name: &str| -> Result<Map> {
            Ok(self
                .connection
                .prepare(&format!("SELECT key, value FROM {name}"))?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Map>>()?)
        };
        // Rooms are read when first used (see `residency`).
        let durable = self
            .connection
            .prepare("SELECT key, value FROM durable WHERE key < 'room/' OR key >= 'room0'")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Map>>()?;
        let extensions = table("extensions")?;
        let timers = self
            .connection
            .prepare("SELECT key, due_ms FROM timers")?
            .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?
            .collect::<rusqlite::Result<_>>()?;
        let meta = self
            .connection
            .prepare("SELECT key, value FROM host_meta")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Loaded {
            durable,
            extensions,
            timers,
            meta,
        })
    }

    /// The durable entries whose key starts with `prefix`, in key order.
    pub fn load_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut query = self
            .connection
            .prepare_cached("SELECT key, value FROM durable WHERE key >= ?1 ORDER BY key")?;
        let mut rows = query.query(params![prefix])?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            if !key.starts_with(prefix) {
                break;
            }
            entries.push((key, row.get(1)?));
        }
        Ok(entries)
    }

    /// Whether any room is stored.
    pub fn has_rooms(&self) -> Result<bool> {
        Ok(self
            .connection
            .prepare_cached("SELECT 1 FROM durable WHERE key >= 'room/' AND key < 'room0' LIMIT 1")?
            .exists([])?)
    }

    /// One disk transaction: durable and extension writes, timer changes and host bookkeeping
    /// together (the volatile tier in `writes` is not the disk's).
    pub fn apply(&mut self, writes: &Writes, meta: &[(&str, &str)]) -> Result<()> {
        let (durable, extensions, timers) = (&writes.durable, &writes.extensions, &writes.timers);
        if durable.is_empty() && extensions.is_empty() && timers.is_empty() && meta.is_empty() {
            return Ok(());
        }
        let txn = self.connection.transaction()?;
        {
            for (table, changes) in [("durable", durable), ("extensions", extensions)] {
                let mut put =
                    txn.prepare_cached(&format!("INSERT OR REPLACE INTO {table} VALUES (?1, ?2)"))?;
                let mut delete =
                    txn.prepare_cached(&format!("DELETE FROM {table} WHERE key = ?1"))?;
                for (key, value) in changes {
                    match value {
                        Some(value) => put.execute(params![key, value])?,
                        None => delete.execute(params![key])?,
                    };
                }
            }
            let mut set = txn.prepare_cached("INSERT OR REPLACE INTO timers VALUES (?1, ?2)")?;
            let mut cancel = txn.prepare_cached("DELETE FROM timers WHERE key = ?1")?;
            for (key, due) in timers {
                match due {
                    Some(due) => set.execute(params![key, *due as i64])?,
                    None => cancel.execute(params![key])?,
                };
            }
            let mut note =
                txn.prepare_cached("INSERT OR REPLACE INTO host_meta VALUES (?1, ?2)")?;
            for (key, value) in meta {
                note.execute(params![key, value])?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
