//! The archive's statements on PostgreSQL (see [`ArchiveRows`]), each prepared once per
//! connection. An append's duplicate id is found by `ON CONFLICT DO NOTHING`, not by an error,
//! which would abort the batch's transaction.

use anyhow::Result;
use postgres::Row;

use super::Postgres;
use crate::storage::archive::{ArchiveEntry, ArchiveRows, DuplicateId};

fn entry_of(row: &Row) -> (i64, ArchiveEntry) {
    (
        row.get(0),
        ArchiveEntry {
            id: row.get(1),
            at_ms: row.get::<_, i64>(2).max(0) as u64,
            sender: row.get(3),
            occupant_id: row.get(4),
            real_jid: row.get(5),
            stanza: row.get(6),
        },
    )
}

impl ArchiveRows for Postgres {
    fn room_id(&self, room: &str) -> Result<Option<i64>> {
        let row = self.query_opt(
            "SELECT room_id FROM archive_rooms WHERE room = $1",
            &[&room],
        )?;
        Ok(row.map(|row| row.get(0)))
    }

    fn add_room(&self, room: &str) -> Result<i64> {
        let rows = self.query(
            "INSERT INTO archive_rooms (room) VALUES ($1) RETURNING room_id",
            &[&room],
        )?;
        Ok(rows[0].get(0))
    }

    fn newest(&self, room_id: i64) -> Result<Option<(i64, i64)>> {
        let row = self.query_opt(
            "SELECT seq, at_ms FROM archive WHERE room_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&room_id],
        )?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    fn insert(
        &self,
        room_id: i64,
        seq: i64,
        at_ms: i64,
        entry: &ArchiveEntry,
    ) -> Result<Result<(), DuplicateId>> {
        let inserted = self.execute(
            "INSERT INTO archive VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (room_id, id) DO NOTHING",
            &[
                &room_id,
                &seq,
                &entry.id,
                &at_ms,
                &entry.sender,
                &entry.occupant_id,
                &entry.real_jid,
                &entry.stanza,
            ],
        )?;
        Ok(if inserted == 1 {
            Ok(())
        } else {
            Err(DuplicateId)
        })
    }

    fn replace(&self, room_id: i64, id: &str, stanza: &str) -> Result<bool> {
        let changed = self.execute(
            "UPDATE archive SET stanza = $3 WHERE room_id = $1 AND id = $2",
            &[&room_id, &id, &stanza],
        )?;
        Ok(changed > 0)
    }

    fn forget_room(&self, room_id: i64) -> Result<()> {
        self.execute(
            "WITH forgotten AS (DELETE FROM archive_rooms WHERE room_id = $1 RETURNING room_id)
             INSERT INTO archive_deleted SELECT room_id FROM forgotten",
            &[&room_id],
        )?;
        Ok(())
    }

    fn has_deleted(&self) -> Result<bool> {
        Ok(self
            .query_opt("SELECT 1 FROM archive_deleted LIMIT 1", &[])?
            .is_some())
    }

    fn first_deleted(&self) -> Result<Option<i64>> {
        let row = self.query_opt(
            "SELECT room_id FROM archive_deleted ORDER BY room_id LIMIT 1",
            &[],
        )?;
        Ok(row.map(|row| row.get(0)))
    }

    fn drop_deleted(&self, room_id: i64) -> Result<()> {
        self.execute(
            "DELETE FROM archive_deleted WHERE room_id = $1",
            &[&room_id],
        )?;
        Ok(())
    }

    fn seq_of(&self, room_id: i64, id: &str) -> Result<Option<i64>> {
        let row = self.query_opt(
            "SELECT seq FROM archive WHERE room_id = $1 AND id = $2",
            &[&room_id, &id],
        )?;
        Ok(row.map(|row| row.get(0)))
    }

    fn end(&self, room_id: i64, newest: bool) -> Result<Option<i64>> {
        let sql = if newest {
            "SELECT seq FROM archive WHERE room_id = $1 ORDER BY seq DESC LIMIT 1"
        } else {
            "SELECT seq FROM archive WHERE room_id = $1 ORDER BY seq ASC LIMIT 1"
        };
        Ok(self.query_opt(sql, &[&room_id])?.map(|row| row.get(0)))
    }

    fn first_from(&self, room_id: i64, at_ms: i64) -> Result<Option<i64>> {
        let row = self.query_opt(
            "SELECT seq FROM archive WHERE room_id = $1 AND at_ms >= $2
             ORDER BY at_ms, seq LIMIT 1",
            &[&room_id, &at_ms],
        )?;
        Ok(row.map(|row| row.get(0)))
    }

    fn last_until(&self, room_id: i64, at_ms: i64) -> Result<Option<i64>> {
        let row = self.query_opt(
            "SELECT seq FROM archive WHERE room_id = $1 AND at_ms <= $2
             ORDER BY at_ms DESC, seq DESC LIMIT 1",
            &[&room_id, &at_ms],
        )?;
        Ok(row.map(|row| row.get(0)))
    }

    fn rows(
        &self,
        room_id: i64,
        (from, to): (i64, i64),
        with: Option<&str>,
        ascending: bool,
        limit: usize,
    ) -> Result<Vec<(i64, ArchiveEntry)>> {
        let limit = limit as i64;
        let rows = match (with, ascending) {
            (None, true) => self.query(
                "SELECT seq, id, at_ms, sender, occupant_id, real_jid, stanza FROM archive
                 WHERE room_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq ASC LIMIT $4",
                &[&room_id, &from, &to, &limit],
            )?,
            (None, false) => self.query(
                "SELECT seq, id, at_ms, sender, occupant_id, real_jid, stanza FROM archive
                 WHERE room_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq DESC LIMIT $4",
                &[&room_id, &from, &to, &limit],
            )?,
            (Some(with), true) => self.query(
                "SELECT seq, id, at_ms, sender, occupant_id, real_jid, stanza FROM archive
                 WHERE room_id = $1 AND sender = $5 AND seq BETWEEN $2 AND $3
                 ORDER BY seq ASC LIMIT $4",
                &[&room_id, &from, &to, &limit, &with],
            )?,
            (Some(with), false) => self.query(
                "SELECT seq, id, at_ms, sender, occupant_id, real_jid, stanza FROM archive
                 WHERE room_id = $1 AND sender = $5 AND seq BETWEEN $2 AND $3
                 ORDER BY seq DESC LIMIT $4",
                &[&room_id, &from, &to, &limit, &with],
            )?,
        };
        Ok(rows.iter().map(entry_of).collect())
    }

    fn count_from(&self, room_id: i64, with: &str, lo: i64, hi: i64) -> Result<u64> {
        if lo > hi {
            return Ok(0);
        }
        let rows = self.query(
            "SELECT COUNT(*) FROM archive
             WHERE room_id = $1 AND sender = $2 AND seq BETWEEN $3 AND $4",
            &[&room_id, &with, &lo, &hi],
        )?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    fn row_at(&self, room_id: i64, seq: i64) -> Result<ArchiveEntry> {
        let rows = self.query(
            "SELECT seq, id, at_ms, sender, occupant_id, real_jid, stanza FROM archive
             WHERE room_id = $1 AND seq = $2",
            &[&room_id, &seq],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| anyhow::anyhow!("archive entry {seq} of room {room_id} vanished"))?;
        Ok(entry_of(row).1)
    }

    fn delete_through(&self, room_id: i64, seq: i64) -> Result<usize> {
        Ok(self.execute(
            "DELETE FROM archive WHERE room_id = $1 AND seq <= $2",
            &[&room_id, &seq],
        )? as usize)
    }

    fn room_from(&self, room_id: i64) -> Result<Option<i64>> {
        let row = self.query_opt(
            "SELECT room_id FROM archive_rooms WHERE room_id >= $1 ORDER BY room_id LIMIT 1",
            &[&room_id],
        )?;
        Ok(row.map(|row| row.get(0)))
    }
}
