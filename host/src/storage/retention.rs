//! The operator's bounds on the rooms' archives (`--archive-max-age`, `--archive-max-per-room`):
//! the oldest entries past them are deleted between batches, a bounded chunk at a time, so that
//! expiry never pauses the rooms noticeably however large the backlog. The entries of deleted
//! rooms' archives go the same way, first.

use std::time::Duration;

use anyhow::Result;

use super::archive::{self, ArchiveRows};

/// Entries one pass deletes at most.
/// 500 deletions (with their four index updates) take a few ms: about the cost of one batch.
pub const ROWS_PER_PASS: usize = 500;
/// Rooms one pass looks at at most.
pub const ROOMS_PER_PASS: usize = 200;
/// After a round through every room, the next one starts this much later.
pub const ROUND_INTERVAL: Duration = Duration::from_secs(10);

/// What the operator keeps; the default keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_per_room: Option<u64>,
}

impl Retention {
    pub fn keeps_everything(&self) -> bool {
        self.max_age.is_none() && self.max_per_room.is_none()
    }
}

/// Where expiry stands in its round through the rooms.
#[derive(Debug, Default)]
pub struct Expiry {
    retention: Retention,
    /// The room the next pass starts at (by `room_id`).
    next_room: i64,
    /// No retention pass before this time (ms since the Unix epoch).
    next_pass_ms: u64,
    /// Deleted rooms may have entries left.
    deleted_rooms: bool,
}

impl Expiry {
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// A room's archive was deleted: its entries wait for the next passes.
    pub fn note_deleted_room(&mut self) {
        self.deleted_rooms = true;
    }

    /// Whether a pass has anything to do at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        self.deleted_rooms || self.retention_due(now_ms)
    }

    fn retention_due(&self, now_ms: u64) -> bool {
        !self.retention.keeps_everything() && now_ms >= self.next_pass_ms
    }

    /// One pass: deletes up to [`ROWS_PER_PASS`] entries, those of deleted rooms first, then
    /// expired ones from up to [`ROOMS_PER_PASS`] rooms, going on where the last pass stopped;
    /// returns how many it deleted. A pass that used up its budget leaves the next one due at
    /// once.
    pub fn pass(&mut self, rows: &dyn ArchiveRows, now_ms: u64) -> Result<usize> {
        let mut deleted = 0;
        if self.deleted_rooms {
            deleted = archive::collect_deleted(rows, ROWS_PER_PASS)?;
            if deleted == ROWS_PER_PASS {
                return Ok(deleted);
            }
            self.deleted_rooms = false;
        }
        if !self.retention_due(now_ms) {
            return Ok(deleted);
        }
        let cutoff_ms = self
            .retention
            .max_age
            .map(|age| now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
        for _ in 0..ROOMS_PER_PASS {
            let Some(room_id) = rows.room_from(self.next_room)? else {
                self.next_room = 0;
                self.next_pass_ms = now_ms + ROUND_INTERVAL.as_millis() as u64;
                return Ok(deleted);
            };
            let (removed, finished) = archive::expire_oldest(
                rows,
                room_id,
                cutoff_ms,
                self.retention.max_per_room,
                ROWS_PER_PASS - deleted,
            )?;
            deleted += removed;
            if !finished {
                return Ok(deleted);
            }
            self.next_room = room_id + 1;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_stores::each_store;
    use crate::storage::{
        ArchiveEntry, ArchiveFilter, ArchivePosition, ArchiveQuery, Quota, Storage, Transaction,
    };

    const DAY_MS: u64 = 86_400_000;

    /// `count` entries in `room`, one a minute from `from_ms`, each in its own call.
    fn archive(storage: &mut Storage, room: &str, count: u64, from_ms: u64) {
        let mut txn = Transaction::new(Quota::default());
        for n in 0..count {
            let entry = ArchiveEntry {
                id: format!("{room}-{n}"),
                at_ms: from_ms + n * 60_000,
                sender: format!("{room}/nick"),
                occupant_id: None,
                real_jid: None,
                stanza: "<message/>".into(),
            };
            txn.archive_append(storage, room, &entry).unwrap();
        }
        storage.apply(txn.writes).unwrap();
    }

    fn kept(storage: &Storage, room: &str) -> (u64, Option<String>) {
        let query = ArchiveQuery {
            filter: ArchiveFilter::default(),
            position: ArchivePosition::Oldest,
            limit: 1,
        };
        let page = storage.archive_query(room, &query).unwrap();
        (
            page.count,
            page.entries.first().map(|entry| entry.id.clone()),
        )
    }

    #[test]
    fn the_default_keeps_everything() {
        each_store(|store| {
            let mut storage = Storage::open(store).unwrap();
            archive(&mut storage, "a", 10, 0);
            assert_eq!(storage.expire_archive(100 * DAY_MS).unwrap(), 0);
            assert_eq!(kept(&storage, "a").0, 10);
        });
    }

    #[test]
    fn a_pass_deletes_what_is_too_old_or_beyond_the_count_within_its_budget() {
        each_store(|store| {
            let mut storage = Storage::open(store).unwrap();
            let now = 10 * DAY_MS;
            // `old`: a pass and 100 entries, all older than a day; `new`: 30 recent ones.
            archive(&mut storage, "old", ROWS_PER_PASS as u64 + 100, 0);
            archive(&mut storage, "new", 30, now - 60 * 60_000);
            storage.set_archive_retention(Retention {
                max_age: Some(Duration::from_millis(DAY_MS)),
                max_per_room: Some(20),
            });
            assert_eq!(storage.expire_archive(now).unwrap(), ROWS_PER_PASS);
            assert_eq!(
                kept(&storage, "old").0,
                100,
                "the oldest first, within the budget"
            );
            assert_eq!(kept(&storage, "new").0, 30, "not reached yet");
            assert_eq!(
                storage.expire_archive(now).unwrap(),
                100 + 10,
                "due again at once"
            );
            assert_eq!(kept(&storage, "old").0, 0);
            assert_eq!(kept(&storage, "new"), (20, Some("new-10".into())));
            assert_eq!(
                storage.expire_archive(now).unwrap(),
                0,
                "round over: not due yet"
            );
            let later = now + ROUND_INTERVAL.as_millis() as u64;
            assert_eq!(
                storage.expire_archive(later).unwrap(),
                0,
                "nothing more to delete"
            );
        });
    }

    #[test]
    fn expiry_goes_with_the_batch_and_survives_a_restart() {
        each_store(|store| {
            let now = 10 * DAY_MS;
            {
                let mut storage = Storage::open(store).unwrap();
                archive(&mut storage, "r", 5, now - 10 * 60_000);
                storage.enable_group_commit();
                storage.set_archive_retention(Retention {
                    max_age: Some(Duration::from_secs(7 * 60)),
                    max_per_room: None,
                });
                assert_eq!(storage.expire_archive(now).unwrap(), 3);
                assert_eq!(kept(&storage, "r"), (2, Some("r-3".into())));
                storage.sync().unwrap();
            }
            let storage = Storage::open(store).unwrap();
            assert_eq!(kept(&storage, "r"), (2, Some("r-3".into())));
        });
    }

    #[test]
    fn a_deleted_archive_is_forgotten_at_once_and_its_entries_collected_in_passes() {
        each_store(|store| {
            {
                let mut storage = Storage::open(store).unwrap();
                archive(&mut storage, "gone", ROWS_PER_PASS as u64 + 100, 0);
                let mut txn = Transaction::new(Quota::default());
                txn.archive_delete(&mut storage, "gone");
                storage.apply(txn.writes).unwrap();
                archive(&mut storage, "gone", 1, 0);
                assert_eq!(
                    kept(&storage, "gone"),
                    (1, Some("gone-0".into())),
                    "a new archive"
                );
                assert_eq!(storage.expire_archive(0).unwrap(), ROWS_PER_PASS);
            }
            let mut storage = Storage::open(store).unwrap();
            assert_eq!(
                storage.expire_archive(0).unwrap(),
                100,
                "resumed after a restart"
            );
            assert_eq!(storage.expire_archive(0).unwrap(), 0);
            assert_eq!(kept(&storage, "gone"), (1, Some("gone-0".into())));
        });
    }
}
