//! The archive's statements on SQLite (see [`ArchiveRows`]), each prepared once per connection.

use anyhow::Result;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use crate::storage::archive::{ArchiveEntry, ArchiveRows, DuplicateId};

const COLUMNS: &str = "seq, id, at_ms, sender, occupant_id, real_jid, stanza";

fn entry_of(row: &Row) -> rusqlite::Result<(i64, ArchiveEntry)> {
    Ok((
        row.get(0)?,
        ArchiveEntry {
            id: row.get(1)?,
            at_ms: row.get::<_, i64>(2)?.max(0) as u64,
            sender: row.get(3)?,
            occupant_id: row.get(4)?,
            real_jid: row.get(5)?,
            stanza: row.get(6)?,
        },
    ))
}

impl ArchiveRows for Connection {
    fn room_id(&self, room: &str) -> Result<Option<i64>> {
        Ok(self
            .prepare_cached("SELECT room_id FROM archive_rooms WHERE room = ?1")?
            .query_row(params![room], |row| row.get(0))
            .optional()?)
    }

    fn add_room(&self, room: &str) -> Result<i64> {
        self.prepare_cached("INSERT INTO archive_rooms (room) VALUES (?1)")?
            .execute(params![room])?;
        Ok(self.last_insert_rowid())
    }

    fn newest(&self, room_id: i64) -> Result<Option<(i64, i64)>> {
        Ok(self
            .prepare_cached(
                "SELECT seq, at_ms FROM archive WHERE room_id = ?1 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![room_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn insert(
        &self,
        room_id: i64,
        seq: i64,
        at_ms: i64,
        entry: &ArchiveEntry,
    ) -> Result<Result<(), DuplicateId>> {
        let inserted = self
            .prepare_cached("INSERT INTO archive VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
            .execute(params![
                room_id,
                seq,
                entry.id,
                at_ms,
                entry.sender,
                entry.occupant_id,
                entry.real_jid,
                entry.stanza
            ]);
        match inserted {
            Ok(_) => Ok(Ok(())),
            // The only constraint an append can break is the room's unique ids.
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == ErrorCode::ConstraintViolation =>
            {
                Ok(Err(DuplicateId))
            }
            Err(error) => Err(error.into()),
        }
    }

    fn replace(&self, room_id: i64, id: &str, stanza: &str) -> Result<bool> {
        let changed = self
            .prepare_cached("UPDATE archive SET stanza = ?3 WHERE room_id = ?1 AND id = ?2")?
            .execute(params![room_id, id, stanza])?;
        Ok(changed > 0)
    }

    fn forget_room(&self, room_id: i64) -> Result<()> {
        self.prepare_cached("INSERT INTO archive_deleted (room_id) VALUES (?1)")?
            .execute(params![room_id])?;
        self.prepare_cached("DELETE FROM archive_rooms WHERE room_id = ?1")?
            .execute(params![room_id])?;
        Ok(())
    }

    fn has_deleted(&self) -> Result<bool> {
        Ok(self
            .prepare_cached("SELECT 1 FROM archive_deleted LIMIT 1")?
            .exists([])?)
    }

    fn first_deleted(&self) -> Result<Option<i64>> {
        Ok(self
            .prepare_cached("SELECT room_id FROM archive_deleted ORDER BY room_id LIMIT 1")?
            .query_row([], |row| row.get(0))
            .optional()?)
    }

    fn drop_deleted(&self, room_id: i64) -> Result<()> {
        self.prepare_cached("DELETE FROM archive_deleted WHERE room_id = ?1")?
            .execute(params![room_id])?;
        Ok(())
    }

    fn seq_of(&self, room_id: i64, id: &str) -> Result<Option<i64>> {
        Ok(self
            .prepare_cached("SELECT seq FROM archive WHERE room_id = ?1 AND id = ?2")?
            .query_row(params![room_id, id], |row| row.get(0))
            .optional()?)
    }

    fn end(&self, room_id: i64, newest: bool) -> Result<Option<i64>> {
        let sql = if newest {
            "SELECT seq FROM archive WHERE room_id = ?1 ORDER BY seq DESC LIMIT 1"
        } else {
            "SELECT seq FROM archive WHERE room_id = ?1 ORDER BY seq ASC LIMIT 1"
        };
        Ok(self
            .prepare_cached(sql)?
            .query_row(params![room_id], |row| row.get(0))
            .optional()?)
    }

    fn first_from(&self, room_id: i64, at_ms: i64) -> Result<Option<i64>> {
        Ok(self
            .prepare_cached(
                "SELECT seq FROM archive WHERE room_id = ?1 AND at_ms >= ?2
                 ORDER BY at_ms, seq LIMIT 1",
            )?
            .query_row(params![room_id, at_ms], |row| row.get(0))
            .optional()?)
    }

    fn last_until(&self, room_id: i64, at_ms: i64) -> Result<Option<i64>> {
        Ok(self
            .prepare_cached(
                "SELECT seq FROM archive WHERE room_id = ?1 AND at_ms <= ?2
                 ORDER BY at_ms DESC, seq DESC LIMIT 1",
            )?
            .query_row(params![room_id, at_ms], |row| row.get(0))
            .optional()?)
    }

    fn rows(
        &self,
        room_id: i64,
        (from, to): (i64, i64),
        with: Option<&str>,
        ascending: bool,
        limit: usize,
    ) -> Result<Vec<(i64, ArchiveEntry)>> {
        let order = if ascending { "ASC" } else { "DESC" };
        let sender = if with.is_some() {
            "AND sender = ?5"
        } else {
            ""
        };
        let mut statement = self.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM archive
             WHERE room_id = ?1 {sender} AND seq BETWEEN ?2 AND ?3
             ORDER BY seq {order} LIMIT ?4"
        ))?;
        let limit = limit as i64;
        let rows = match with {
            Some(with) => statement.query_map(params![room_id, from, to, limit, with], entry_of)?,
            None => statement.query_map(params![room_id, from, to, limit], entry_of)?,
        };
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn count_from(&self, room_id: i64, with: &str, lo: i64, hi: i64) -> Result<u64> {
        if lo > hi {
            return Ok(0);
        }
        Ok(self
            .prepare_cached(
                "SELECT COUNT(*) FROM archive
                 WHERE room_id = ?1 AND sender = ?2 AND seq BETWEEN ?3 AND ?4",
            )?
            .query_row(params![room_id, with, lo, hi], |row| row.get::<_, i64>(0))
            .map(|count| count as u64)?)
    }

    fn row_at(&self, room_id: i64, seq: i64) -> Result<ArchiveEntry> {
        Ok(self
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM archive WHERE room_id = ?1 AND seq = ?2"
            ))?
            .query_row(params![room_id, seq], entry_of)?
            .1)
    }

    fn delete_through(&self, room_id: i64, seq: i64) -> Result<usize> {
        Ok(self
            .prepare_cached("DELETE FROM archive WHERE room_id = ?1 AND seq <= ?2")?
            .execute(params![room_id, seq])?)
    }

    fn room_from(&self, room_id: i64) -> Result<Option<i64>> {
        Ok(self
            .prepare_cached(
                "SELECT room_id FROM archive_rooms WHERE room_id >= ?1 ORDER BY room_id LIMIT 1",
            )?
            .query_row(params![room_id], |row| row.get(0))
            .optional()?)
    }
}
