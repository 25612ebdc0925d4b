//! The embedded backend: one SQLite database in the data directory, written once per committed
//! call (or once per batch with group commit).

mod archive_rows;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use super::archive::ArchiveRows;
use super::backend::{Backend, Loaded};
use super::migrations::{self, Schema};
use super::{Map, Writes};
use crate::clock::{Clock, SystemClock};

/// Version N is `MIGRATIONS[N - 1]`; never edit one that was released, add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the schema from before migrations were counted, hence IF NOT EXISTS.
    "CREATE TABLE IF NOT EXISTS durable (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS extensions (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS timers (key TEXT PRIMARY KEY, due_ms INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS host_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS archive_rooms (
         room_id INTEGER PRIMARY KEY AUTOINCREMENT,
         room TEXT NOT NULL UNIQUE
     );
     CREATE TABLE IF NOT EXISTS archive_deleted (room_id INTEGER PRIMARY KEY);
     CREATE TABLE IF NOT EXISTS archive (
         room_id INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         id TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         sender TEXT NOT NULL,
         occupant_id TEXT,
         real_jid TEXT,
         stanza TEXT NOT NULL,
         PRIMARY KEY (room_id, seq)
     );
     CREATE UNIQUE INDEX IF NOT EXISTS archive_by_id ON archive (room_id, id);
     CREATE INDEX IF NOT EXISTS archive_by_time ON archive (room_id, at_ms, seq);
     CREATE INDEX IF NOT EXISTS archive_by_sender ON archive (room_id, sender, seq);",
];

pub struct Sqlite {
    connection: Connection,
    /// With group commit: a transaction is open, holding the archive writes of the calls since
    /// the last sync, committed by [`Backend::commit_batch`].
    batch_open: bool,
    /// A savepoint holds the archive writes of the call in progress: kept by the next
    /// [`Backend::apply`], undone by [`Backend::roll_back_call`].
    call_open: bool,
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
        Sqlite::with_tables(connection, &path.display().to_string())
    }

    /// A database that forgets everything when dropped: the test host's archive.
    pub fn in_memory() -> Result<Sqlite> {
        Sqlite::with_tables(Connection::open_in_memory()?, "the in-memory store")
    }

    fn with_tables(connection: Connection, name: &str) -> Result<Sqlite> {
        let mut sqlite = Sqlite {
            connection,
            batch_open: false,
            call_open: false,
        };
        migrations::migrate(&mut sqlite, MIGRATIONS, name)?;
        Ok(sqlite)
    }

    fn open_batch(&mut self) -> rusqlite::Result<()> {
        if !self.batch_open {
            self.connection.execute_batch("BEGIN")?;
            self.batch_open = true;
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

impl Schema for Sqlite {
    fn version(&mut self) -> Result<u32> {
        self.connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_ms INTEGER NOT NULL
             )",
        )?;
        Ok(self.connection.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )?)
    }

    fn run_migration(&mut self, version: u32, sql: &str) -> Result<()> {
        let txn = self.connection.transaction()?;
        txn.execute_batch(sql)?;
        txn.execute(
            "INSERT INTO schema_migrations VALUES (?1, ?2)",
            params![version, SystemClock.now_ms() as i64],
        )?;
        Ok(txn.commit()?)
    }
}

impl Backend for Sqlite {
    fn load(&mut self) -> Result<Loaded> {
        let durable = self
            .connection
            .prepare("SELECT key, value FROM durable WHERE key < 'room/' OR key >= 'room0'")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Map>>()?;
        let extensions = self
            .connection
            .prepare("SELECT key, value FROM extensions")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Map>>()?;
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
            // One instance per file: every timer is its own.
            timer_rooms: Default::default(),
            meta,
        })
    }

    fn load_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
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

    fn has_rooms(&self) -> Result<bool> {
        Ok(self
            .connection
            .prepare_cached("SELECT 1 FROM durable WHERE key >= 'room/' AND key < 'room0' LIMIT 1")?
            .exists([])?)
    }

    fn archive(&self) -> &dyn ArchiveRows {
        &self.connection
    }

    fn call_writer(&mut self, batched: bool) -> Result<&dyn ArchiveRows> {
        if batched {
            self.open_batch()?;
        }
        if !self.call_open {
            self.connection.execute_batch("SAVEPOINT call")?;
            self.call_open = true;
        }
        Ok(&self.connection)
    }

    fn write_between_calls(
        &mut self,
        batched: bool,
        write: &mut dyn FnMut(&dyn ArchiveRows) -> Result<usize>,
    ) -> Result<usize> {
        if batched {
            self.open_batch()?;
            return write(&self.connection);
        }
        let txn = self.connection.savepoint()?;
        let written = write(&*txn)?;
        txn.commit()?;
        Ok(written)
    }

    fn apply(&mut self, writes: &Writes, meta: &[(&str, &str)]) -> Result<()> {
        let written = self
            .write(writes, meta)
            .map_err(anyhow::Error::from)
            .and_then(|()| self.release_call());
        if let Err(error) = written {
            if let Err(undo) = self.roll_back_call() {
                tracing::error!("{undo:#}");
            }
            return Err(error);
        }
        Ok(())
    }

    fn release_call(&mut self) -> Result<()> {
        if self.call_open {
            self.connection.execute_batch("RELEASE call")?;
            self.call_open = false;
        }
        Ok(())
    }

    fn roll_back_call(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.call_open) {
            return Ok(());
        }
        self.connection
            .execute_batch("ROLLBACK TO call; RELEASE call")
            .context("rolling the call's archive writes back")
    }

    fn commit_batch(
        &mut self,
        writes: &Writes,
        meta: &[(&str, &str)],
        _rooms: &BTreeSet<String>,
    ) -> Result<()> {
        // Without archive writes no batch is open: the writes are a transaction of their own.
        self.apply(writes, meta)?;
        if std::mem::take(&mut self.batch_open) {
            self.connection
                .execute_batch("COMMIT")
                .context("committing the batch")?;
        }
        Ok(())
    }

    fn abandon_batch(&mut self) {
        self.batch_open = false;
        self.call_open = false;
        // A failed COMMIT (e.g. SQLITE_BUSY) leaves the transaction open.
        if !self.connection.is_autocommit() {
            if let Err(error) = self.connection.execute_batch("ROLLBACK") {
                tracing::error!(%error, "rolling the failed batch back");
            }
        }
    }
}
