//! The durable tier on disk: one SQLite database, written once per committed call.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use super::{archive, Map, Writes};

pub struct Sqlite {
    connection: Connection,
    /// With group commit: a transaction is open, holding the archive writes of the calls since
    /// the last sync, committed by [`Sqlite::commit_batch`].
    batch_open: bool,
    /// A savepoint holds the archive writes of the call in progress: kept by the next
    /// [`Sqlite::apply`], undone by [`Sqlite::roll_back_call`].
    call_open: bool,
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
             PRAGMA synchronous = FULL;",
        )?;
        Sqlite::with_tables(connection)
    }

    /// A database that forgets everything when dropped: the test host's archive.
    pub fn in_memory() -> Result<Sqlite> {
        Sqlite::with_tables(Connection::open_in_memory()?)
    }

    fn with_tables(connection: Connection) -> Result<Sqlite> {
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS durable (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS extensions (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS timers (key TEXT PRIMARY KEY, due_ms INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS host_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
        )?;
        connection.execute_batch(archive::SCHEMA)?;
        Ok(Sqlite {
            connection,
            batch_open: false,
            call_open: false,
        })
    }

    /// The connection, for reads (they see the writes of the call in progress).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The connection, for a write of the call in progress: inside the call's savepoint, and
    /// with `batched` (group commit) inside the batch's transaction.
    pub fn call_writer(&mut self, batched: bool) -> rusqlite::Result<&Connection> {
        if batched && !self.batch_open {
            self.connection.execute_batch("BEGIN")?;
            self.batch_open = true;
        }
        if !self.call_open {
            self.connection.execute_batch("SAVEPOINT call")?;
            self.call_open = true;
        }
        Ok(&self.connection)
    }

    /// Runs `write` between calls: with `batched` (group commit) inside the batch's
    /// transaction, else as a transaction of its own.
    pub fn write_between_calls<T>(
        &mut self,
        batched: bool,
        write: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        if batched {
            if !self.batch_open {
                self.connection.execute_batch("BEGIN")?;
                self.batch_open = true;
            }
            return write(&self.connection);
        }
        let txn = self.connection.savepoint()?;
        let written = write(&txn)?;
        txn.commit()?;
        Ok(written)
    }

    /// Undoes the writes of the call in progress, if it made any.
    pub fn roll_back_call(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.call_open) {
            return Ok(());
        }
        self.connection
            .execute_batch("ROLLBACK TO call; RELEASE call")
            .context("rolling the call's archive writes back")
    }

    /// Keeps the writes of the call in progress: on disk now when it is the outermost
    /// transaction, else with the batch.
    pub fn release_call(&mut self) -> rusqlite::Result<()> {
        if self.call_open {
            self.connection.execute_batch("RELEASE call")?;
            self.call_open = false;
        }
        Ok(())
    }

    /// Commits the batch's transaction, if one is open.
    pub fn commit_batch(&mut self) -> Result<()> {
        if std::mem::take(&mut self.batch_open) {
            self.connection
                .execute_batch("COMMIT")
                .context("committing the batch")?;
        }
        Ok(())
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
    /// together (the volatile tier in `writes` is not the disk's), with the archive writes of
    /// the call in progress. Inside a batch, they join it. On an error nothing is kept, the
    /// call's archive writes included.
    pub fn apply(&mut self, writes: &Writes, meta: &[(&str, &str)]) -> Result<()> {
        let written = self.write(writes, meta).and_then(|()| self.release_call());
        if let Err(error) = written {
            if let Err(undo) = self.roll_back_call() {
                tracing::error!("{undo:#}");
            }
            return Err(error.into());
        }
        Ok(())
    }

    fn write(&mut self, writes: &Writes, meta: &[(&str, &str)]) -> rusqlite::Result<()> {
        let (durable, extensions, timers) = (&writes.durable, &writes.extensions, &writes.timers);
        if durable.is_empty() && extensions.is_empty() && timers.is_empty() && meta.is_empty() {
            return Ok(());
        }
        let txn = self.connection.savepoint()?;
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
        txn.commit()
    }
}
