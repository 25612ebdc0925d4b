//! Each room's message archive (`muc:plugin/archive`): tables beside the durable tier, in the
//! same database and transactions, read a page at a time and never whole (`wit/STORAGE.md`).
//! The logic is here; each backend answers its statements ([`ArchiveRows`]).
//!
//! A deleted room's name is forgotten at once (a room made again under it starts a new archive,
//! with a new `room_id`, never reused); its entries are deleted later, in bounded chunks between
//! calls (see [`collect_deleted`]), so destroying a room of a million messages does not pause
//! the service.
//!
//! A room's entries are numbered by `seq`, contiguous from the oldest kept to the newest: only
//! the oldest entries are ever deleted (trim, retention) or the whole room. Times never go
//! backwards within a room (an append is clamped to the newest entry's time), so a time range
//! is a `seq` range too. Counts and RSM indexes of ranges are therefore arithmetic, except under
//! a `with` filter (counted on its index) or an `ids` filter (counted in memory).

use anyhow::Result;

/// The most entries one query returns, whatever its limit.
pub const MAX_PAGE_ENTRIES: u32 = 1000;
/// A page stops growing once its stanzas pass this size (it holds at least one entry).
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// The archive's statements, one each, as a backend runs them on its tables `archive_rooms`
/// (room name to `room_id`), `archive_deleted` (rooms whose entries wait for collection) and
/// `archive` (the entries, by `room_id` and `seq`). Times are ms since the Unix epoch.
pub trait ArchiveRows {
    fn room_id(&self, room: &str) -> Result<Option<i64>>;
    /// Names a new room; its new `room_id`.
    fn add_room(&self, room: &str) -> Result<i64>;
    /// The newest entry's `seq` and time.
    fn newest(&self, room_id: i64) -> Result<Option<(i64, i64)>>;
    /// Adds an entry, unless the room has one with its id.
    fn insert(
        &self,
        room_id: i64,
        seq: i64,
        at_ms: i64,
        entry: &ArchiveEntry,
    ) -> Result<Result<(), DuplicateId>>;
    /// Whether an entry had this id.
    fn replace(&self, room_id: i64, id: &str, stanza: &str) -> Result<bool>;
    /// Forgets the room's name and lists it for collection.
    fn forget_room(&self, room_id: i64) -> Result<()>;
    fn has_deleted(&self) -> Result<bool>;
    /// The deleted room with the lowest `room_id`.
    fn first_deleted(&self) -> Result<Option<i64>>;
    /// A deleted room with no entries left.
    fn drop_deleted(&self, room_id: i64) -> Result<()>;
    fn seq_of(&self, room_id: i64, id: &str) -> Result<Option<i64>>;
    /// The oldest `seq`, or the newest with `newest`.
    fn end(&self, room_id: i64, newest: bool) -> Result<Option<i64>>;
    /// The first entry (by time, then `seq`) at or after `at_ms`.
    fn first_from(&self, room_id: i64, at_ms: i64) -> Result<Option<i64>>;
    /// The last entry (by time, then `seq`) at or before `at_ms`.
    fn last_until(&self, room_id: i64, at_ms: i64) -> Result<Option<i64>>;
    /// Up to `limit` entries with `seq` in `from..=to` (from `with` only, when given), from the
    /// oldest end when `ascending`, else from the newest, in that reading order.
    fn rows(
        &self,
        room_id: i64,
        span: (i64, i64),
        with: Option<&str>,
        ascending: bool,
        limit: usize,
    ) -> Result<Vec<(i64, ArchiveEntry)>>;
    /// Entries from `with` with `seq` in `lo..=hi`.
    fn count_from(&self, room_id: i64, with: &str, lo: i64, hi: i64) -> Result<u64>;
    /// The entry at `seq`, which exists.
    fn row_at(&self, room_id: i64, seq: i64) -> Result<ArchiveEntry>;
    /// Deletes the entries up to and including `seq`; returns how many.
    fn delete_through(&self, room_id: i64, seq: i64) -> Result<usize>;
    /// The first archived room from `room_id` on, in `room_id` order.
    fn room_from(&self, room_id: i64) -> Result<Option<i64>>;
}

/// One archived message (`archive.entry`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    pub id: String,
    pub at_ms: u64,
    pub sender: String,
    pub occupant_id: Option<String>,
    pub real_jid: Option<String>,
    pub stanza: String,
}

impl ArchiveEntry {
    /// What the entry costs against the call's write quota.
    pub fn bytes(&self) -> usize {
        self.id.len()
            + self.sender.len()
            + self.occupant_id.as_ref().map_or(0, String::len)
            + self.real_jid.as_ref().map_or(0, String::len)
            + self.stanza.len()
    }
}

/// Which entries a query ranges over (`archive.filter`); `ids` empty: any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveFilter {
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub with: Option<String>,
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    pub ids: Vec<String>,
}

/// Which page of the filtered range (`archive.position`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchivePosition {
    Oldest,
    Newest,
    After(String),
    Before(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub filter: ArchiveFilter,
    pub position: ArchivePosition,
    pub limit: u32,
}

/// A page, oldest first (`archive.page`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    pub entries: Vec<ArchiveEntry>,
    pub complete: bool,
    pub count: u64,
    pub index: u64,
}

/// Why a query has no page.
#[derive(Debug)]
pub enum QueryFailure {
    /// An id named as a position or bound is not in the archive: the request's fault.
    ItemNotFound(String),
    /// The database failed.
    Store(anyhow::Error),
}

impl From<anyhow::Error> for QueryFailure {
    fn from(error: anyhow::Error) -> QueryFailure {
        QueryFailure::Store(error)
    }
}

/// The room already archived an entry with this id.
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicateId;

/// Database integers are signed: times past `i64::MAX` mean "the end of time".
pub fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Adds `entry` as the room's newest, its time clamped to the newest entry's.
pub fn append(
    rows: &dyn ArchiveRows,
    room: &str,
    entry: &ArchiveEntry,
) -> Result<Result<(), DuplicateId>> {
    let room_id = match rows.room_id(room)? {
        Some(room_id) => room_id,
        None => rows.add_room(room)?,
    };
    let at = sql_ms(entry.at_ms);
    let (seq, at) = match rows.newest(room_id)? {
        Some((seq, newest_at)) => (seq + 1, at.max(newest_at)),
        None => (0, at),
    };
    rows.insert(room_id, seq, at, entry)
}

/// Replaces the stanza of the room's entry `id`; false when there is none.
pub fn replace(rows: &dyn ArchiveRows, room: &str, id: &str, stanza: &str) -> Result<bool> {
    let Some(room_id) = rows.room_id(room)? else {
        return Ok(false);
    };
    rows.replace(room_id, id, stanza)
}

/// Deletes all but the room's newest `keep` entries.
pub fn trim(rows: &dyn ArchiveRows, room: &str, keep: u32) -> Result<()> {
    let Some(room) = Room::named(rows, room)? else {
        return Ok(());
    };
    if let Some((_, newest)) = room.ends()? {
        rows.delete_through(room.id, newest - i64::from(keep))?;
    }
    Ok(())
}

/// Deletes the room's whole archive: forgets its name now, and leaves its entries to
/// [`collect_deleted`].
pub fn delete(rows: &dyn ArchiveRows, room: &str) -> Result<()> {
    match rows.room_id(room)? {
        Some(room_id) => rows.forget_room(room_id),
        None => Ok(()),
    }
}

/// Deletes up to `budget` entries of deleted rooms, oldest first; returns how many.
pub fn collect_deleted(rows: &dyn ArchiveRows, budget: usize) -> Result<usize> {
    let mut deleted = 0;
    while deleted < budget {
        let Some(room_id) = rows.first_deleted()? else {
            break;
        };
        let room = Room { rows, id: room_id };
        let Some((oldest, newest)) = room.ends()? else {
            rows.drop_deleted(room_id)?;
            continue;
        };
        let through = newest.min(oldest.saturating_add((budget - deleted) as i64) - 1);
        deleted += rows.delete_through(room_id, through)?;
    }
    Ok(deleted)
}

/// One room's entries, as `query` asks.
pub fn query(
    rows: &dyn ArchiveRows,
    room: &str,
    query: &ArchiveQuery,
) -> Result<ArchivePage, QueryFailure> {
    let filter = &query.filter;
    let named_ids = [&filter.after_id, &filter.before_id]
        .into_iter()
        .flatten()
        .chain(match &query.position {
            ArchivePosition::After(id) | ArchivePosition::Before(id) => Some(id),
            ArchivePosition::Oldest | ArchivePosition::Newest => None,
        });
    let Some(room) = Room::named(rows, room)? else {
        return match named_ids.into_iter().next() {
            Some(id) => Err(QueryFailure::ItemNotFound(id.clone())),
            None => Ok(ArchivePage {
                complete: true,
                ..ArchivePage::default()
            }),
        };
    };
    let seq_of = |id: &String| -> Result<i64, QueryFailure> {
        rows.seq_of(room.id, id)?
            .ok_or_else(|| QueryFailure::ItemNotFound(id.clone()))
    };
    let after = filter.after_id.as_ref().map(seq_of).transpose()?;
    let before = filter.before_id.as_ref().map(seq_of).transpose()?;
    let position = match &query.position {
        ArchivePosition::After(id) => Some(seq_of(id)?),
        ArchivePosition::Before(id) => Some(seq_of(id)?),
        ArchivePosition::Oldest | ArchivePosition::Newest => None,
    };
    let Some(range) = room.filtered_range(filter, after, before)? else {
        return Ok(ArchivePage {
            complete: true,
            ..ArchivePage::default()
        });
    };
    let (from, to, ascending) = match (&query.position, position) {
        (ArchivePosition::After(_), Some(at)) => (range.lo.max(at + 1), range.hi, true),
        (ArchivePosition::Before(_), Some(at)) => (range.lo, range.hi.min(at - 1), false),
        (ArchivePosition::Newest, _) => (range.lo, range.hi, false),
        _ => (range.lo, range.hi, true),
    };
    let limit = query.limit.min(MAX_PAGE_ENTRIES) as usize;
    let with = filter.with.as_deref();
    if !filter.ids.is_empty() {
        return room.page_of_ids(&filter.ids, with, &range, (from, to), ascending, limit);
    }
    // One more than the page, to know whether the range goes on beyond it.
    let mut page = rows.rows(room.id, (from, to), with, ascending, limit + 1)?;
    let mut complete = page.len() <= limit;
    page.truncate(limit);
    complete &= !cut_to_page_bytes(&mut page);
    if !ascending {
        page.reverse();
    }
    let count = match with {
        None => range.len(),
        Some(with) => rows.count_from(room.id, with, range.lo, range.hi)?,
    };
    let index = match (page.first(), with) {
        (None, _) => 0,
        (Some((first, _)), None) => (first - range.lo) as u64,
        (Some((first, _)), Some(with)) => rows.count_from(room.id, with, range.lo, first - 1)?,
    };
    Ok(ArchivePage {
        entries: page.into_iter().map(|(_, entry)| entry).collect(),
        complete,
        count,
        index,
    })
}

/// Drops the entries, in reading order, past [`MAX_PAGE_BYTES`]; true when it dropped any.
fn cut_to_page_bytes(rows: &mut Vec<(i64, ArchiveEntry)>) -> bool {
    let mut bytes = 0;
    let keep = rows
        .iter()
        .position(|(_, entry)| {
            bytes += entry.stanza.len();
            bytes > MAX_PAGE_BYTES
        })
        .map_or(rows.len(), |over| over.max(1));
    let cut = keep < rows.len();
    rows.truncate(keep);
    cut
}

/// The `seq` range `lo..=hi` a filter's bounds leave (never empty).
struct Range {
    lo: i64,
    hi: i64,
}

impl Range {
    fn len(&self) -> u64 {
        (self.hi - self.lo + 1) as u64
    }

    fn holds(&self, seq: i64) -> bool {
        (self.lo..=self.hi).contains(&seq)
    }
}

/// One room's archive, by its row in `archive_rooms`.
struct Room<'r> {
    rows: &'r dyn ArchiveRows,
    id: i64,
}

impl<'r> Room<'r> {
    fn named(rows: &'r dyn ArchiveRows, room: &str) -> Result<Option<Room<'r>>> {
        Ok(rows.room_id(room)?.map(|id| Room { rows, id }))
    }

    /// The oldest and newest `seq`, unless the archive is empty.
    fn ends(&self) -> Result<Option<(i64, i64)>> {
        Ok(self
            .rows
            .end(self.id, false)?
            .zip(self.rows.end(self.id, true)?))
    }

    /// The range the filter's bounds (ids and times) leave, or None when they leave nothing.
    fn filtered_range(
        &self,
        filter: &ArchiveFilter,
        after: Option<i64>,
        before: Option<i64>,
    ) -> Result<Option<Range>> {
        let Some((mut lo, mut hi)) = self.ends()? else {
            return Ok(None);
        };
        if let Some(after) = after {
            lo = lo.max(after + 1);
        }
        if let Some(before) = before {
            hi = hi.min(before - 1);
        }
        if let Some(start) = filter.start_ms {
            let first = self.rows.first_from(self.id, sql_ms(start))?;
            lo = lo.max(first.unwrap_or(i64::MAX));
        }
        if let Some(end) = filter.end_ms {
            let last = self.rows.last_until(self.id, sql_ms(end))?;
            hi = hi.min(last.unwrap_or(i64::MIN));
        }
        Ok((lo <= hi).then_some(Range { lo, hi }))
    }

    /// The page of a query naming its entries' ids: the matching entries are found one by one,
    /// and counted in memory.
    fn page_of_ids(
        &self,
        ids: &[String],
        with: Option<&str>,
        range: &Range,
        (from, to): (i64, i64),
        ascending: bool,
        limit: usize,
    ) -> Result<ArchivePage, QueryFailure> {
        let mut matching = Vec::new();
        for id in ids {
            let Some(seq) = self.rows.seq_of(self.id, id)? else {
                continue;
            };
            if range.holds(seq) {
                matching.push(seq);
            }
        }
        matching.sort_unstable();
        matching.dedup();
        let mut entries = Vec::new();
        for seq in matching {
            let entry = self.rows.row_at(self.id, seq)?;
            if with.is_none_or(|with| entry.sender == with) {
                entries.push((seq, entry));
            }
        }
        let count = entries.len() as u64;
        let mut candidates: Vec<(i64, ArchiveEntry)> = entries
            .iter()
            .filter(|(seq, _)| (from..=to).contains(seq))
            .cloned()
            .collect();
        if !ascending {
            candidates.reverse();
        }
        let mut complete = candidates.len() <= limit;
        candidates.truncate(limit);
        complete &= !cut_to_page_bytes(&mut candidates);
        if !ascending {
            candidates.reverse();
        }
        let index = candidates.first().map_or(0, |(first, _)| {
            entries.iter().filter(|(seq, _)| seq < first).count() as u64
        });
        Ok(ArchivePage {
            entries: candidates.into_iter().map(|(_, entry)| entry).collect(),
            complete,
            count,
            index,
        })
    }
}

/// Deletes the oldest entries of room `room_id` that are older than `cutoff_ms` or beyond the
/// newest `max_entries`, at most `budget` of them. Returns how many it deleted, and whether
/// none is left to delete.
pub fn expire_oldest(
    rows: &dyn ArchiveRows,
    room_id: i64,
    cutoff_ms: Option<u64>,
    max_entries: Option<u64>,
    budget: usize,
) -> Result<(usize, bool)> {
    let room = Room { rows, id: room_id };
    let Some((oldest, newest)) = room.ends()? else {
        return Ok((0, true));
    };
    let mut through = oldest - 1;
    if let Some(max) = max_entries {
        through = through.max(newest.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX)));
    }
    if let Some(cutoff) = cutoff_ms {
        let first_kept = rows.first_from(room_id, sql_ms(cutoff))?;
        through = through.max(first_kept.map_or(newest, |first| first - 1));
    }
    let within_budget = oldest.saturating_add(budget as i64) - 1;
    let deleted = rows.delete_through(room_id, through.min(within_budget))?;
    Ok((deleted, through <= within_budget))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_stores::each_store;
    use crate::storage::{
        ArchiveWriteError, Quota, Storage, StorageError, StoreLocation, Transaction,
    };

    const ROOM: &str = "room@muc.example";

    fn entry(n: u64, at_ms: u64, sender: &str) -> ArchiveEntry {
        ArchiveEntry {
            id: format!("id{n}"),
            at_ms,
            sender: format!("{ROOM}/{sender}"),
            occupant_id: Some(format!("occ-{sender}")),
            real_jid: None,
            stanza: format!("<message><body>{n}</body></message>"),
        }
    }

    /// One committed call appending `entries` to ROOM.
    fn append_all(storage: &mut Storage, entries: &[ArchiveEntry]) {
        let mut txn = Transaction::new(Quota::default());
        for entry in entries {
            txn.archive_append(storage, ROOM, entry).unwrap();
        }
        assert_eq!(txn.archive_failure, None);
        storage.apply(txn.writes).unwrap();
    }

    /// Ten entries, id0..id9 at 1000, 1010, ... ms, from alice (even) and bob (odd).
    fn ten(store: &StoreLocation) -> Storage {
        let mut storage = Storage::open(store).unwrap();
        let entries: Vec<ArchiveEntry> = (0..10)
            .map(|n| entry(n, 1000 + 10 * n, if n % 2 == 0 { "alice" } else { "bob" }))
            .collect();
        append_all(&mut storage, &entries);
        storage
    }

    fn ask(
        storage: &Storage,
        filter: ArchiveFilter,
        position: ArchivePosition,
        limit: u32,
    ) -> ArchivePage {
        storage
            .archive_query(
                ROOM,
                &ArchiveQuery {
                    filter,
                    position,
                    limit,
                },
            )
            .unwrap_or_else(|failure| panic!("{failure:?}"))
    }

    fn ids(page: &ArchivePage) -> Vec<&str> {
        page.entries.iter().map(|entry| entry.id.as_str()).collect()
    }

    fn after(id: &str) -> ArchivePosition {
        ArchivePosition::After(id.into())
    }

    fn before(id: &str) -> ArchivePosition {
        ArchivePosition::Before(id.into())
    }

    #[test]
    fn pages_forward_from_the_oldest_with_count_index_and_complete() {
        each_store(|store| {
            let storage = ten(store);
            let any = ArchiveFilter::default;
            let first = ask(&storage, any(), ArchivePosition::Oldest, 4);
            assert_eq!(ids(&first), ["id0", "id1", "id2", "id3"]);
            assert_eq!((first.complete, first.count, first.index), (false, 10, 0));
            let second = ask(&storage, any(), after("id3"), 4);
            assert_eq!(ids(&second), ["id4", "id5", "id6", "id7"]);
            assert_eq!((second.complete, second.index), (false, 4));
            let last = ask(&storage, any(), after("id7"), 4);
            assert_eq!(ids(&last), ["id8", "id9"]);
            assert_eq!((last.complete, last.count, last.index), (true, 10, 8));
            let exact = ask(&storage, any(), after("id5"), 4);
            assert!(
                exact.complete,
                "nothing lies beyond a page that ends at the newest"
            );
            let beyond = ask(&storage, any(), after("id9"), 4);
            assert_eq!(
                (ids(&beyond).len(), beyond.complete, beyond.index),
                (0, true, 0)
            );
        });
    }

    #[test]
    fn pages_backward_from_the_newest() {
        each_store(|store| {
            let storage = ten(store);
            let any = ArchiveFilter::default;
            let newest = ask(&storage, any(), ArchivePosition::Newest, 3);
            assert_eq!(ids(&newest), ["id7", "id8", "id9"], "oldest first");
            assert_eq!(
                (newest.complete, newest.count, newest.index),
                (false, 10, 7)
            );
            let earlier = ask(&storage, any(), before("id7"), 3);
            assert_eq!(ids(&earlier), ["id4", "id5", "id6"]);
            let first = ask(&storage, any(), before("id2"), 3);
            assert_eq!(ids(&first), ["id0", "id1"]);
            assert_eq!((first.complete, first.index), (true, 0));
        });
    }

    #[test]
    fn a_limit_of_zero_only_counts() {
        each_store(|store| {
            let storage = ten(store);
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Newest,
                0,
            );
            assert_eq!(
                (ids(&page).len(), page.complete, page.count, page.index),
                (0, false, 10, 0)
            );
        });
    }

    #[test]
    fn bounds_by_id_and_time_narrow_the_range() {
        each_store(|store| {
            let storage = ten(store);
            let by_id = ArchiveFilter {
                after_id: Some("id2".into()),
                before_id: Some("id6".into()),
                ..ArchiveFilter::default()
            };
            let page = ask(&storage, by_id, ArchivePosition::Oldest, 10);
            assert_eq!(ids(&page), ["id3", "id4", "id5"]);
            assert_eq!((page.count, page.complete), (3, true));
            let by_time = ArchiveFilter {
                start_ms: Some(1015),
                end_ms: Some(1050),
                ..ArchiveFilter::default()
            };
            let page = ask(&storage, by_time.clone(), ArchivePosition::Oldest, 2);
            assert_eq!(ids(&page), ["id2", "id3"]);
            assert_eq!((page.count, page.index, page.complete), (4, 0, false));
            let page = ask(&storage, by_time, after("id3"), 2);
            assert_eq!(ids(&page), ["id4", "id5"]);
            assert_eq!((page.index, page.complete), (2, true));
            let none = ArchiveFilter {
                start_ms: Some(5000),
                ..ArchiveFilter::default()
            };
            let page = ask(&storage, none, ArchivePosition::Oldest, 2);
            assert_eq!((page.count, page.complete, ids(&page).len()), (0, true, 0));
            let to_the_end_of_time = ArchiveFilter {
                end_ms: Some(u64::MAX),
                ..ArchiveFilter::default()
            };
            assert_eq!(
                ask(&storage, to_the_end_of_time, ArchivePosition::Oldest, 0).count,
                10
            );
        });
    }

    #[test]
    fn with_keeps_one_senders_entries_and_counts_them() {
        each_store(|store| {
            let storage = ten(store);
            let bob = ArchiveFilter {
                with: Some(format!("{ROOM}/bob")),
                ..ArchiveFilter::default()
            };
            let page = ask(&storage, bob.clone(), ArchivePosition::Oldest, 2);
            assert_eq!(ids(&page), ["id1", "id3"]);
            assert_eq!((page.count, page.index, page.complete), (5, 0, false));
            let page = ask(&storage, bob.clone(), after("id4"), 2);
            assert_eq!(ids(&page), ["id5", "id7"]);
            assert_eq!((page.index, page.complete), (2, false));
            let page = ask(&storage, bob, ArchivePosition::Newest, 2);
            assert_eq!(ids(&page), ["id7", "id9"]);
            assert_eq!((page.index, page.complete), (3, false));
        });
    }

    #[test]
    fn ids_select_entries_and_unknown_ones_are_left_out() {
        each_store(|store| {
            let storage = ten(store);
            let chosen = ArchiveFilter {
                ids: vec![
                    "id8".into(),
                    "id1".into(),
                    "nope".into(),
                    "id5".into(),
                    "id1".into(),
                ],
                ..ArchiveFilter::default()
            };
            let page = ask(&storage, chosen.clone(), ArchivePosition::Oldest, 2);
            assert_eq!(ids(&page), ["id1", "id5"]);
            assert_eq!((page.count, page.index, page.complete), (3, 0, false));
            let page = ask(&storage, chosen.clone(), ArchivePosition::Newest, 2);
            assert_eq!(ids(&page), ["id5", "id8"]);
            assert_eq!((page.index, page.complete), (1, false));
            let bob = ArchiveFilter {
                with: Some(format!("{ROOM}/bob")),
                ..chosen
            };
            assert_eq!(
                ids(&ask(&storage, bob, ArchivePosition::Oldest, 9)),
                ["id1", "id5"]
            );
        });
    }

    #[test]
    fn an_unknown_id_as_a_position_or_a_bound_is_item_not_found() {
        each_store(|store| {
            let storage = ten(store);
            let unknown = |filter: ArchiveFilter, position: ArchivePosition| match storage
                .archive_query(
                    ROOM,
                    &ArchiveQuery {
                        filter,
                        position,
                        limit: 5,
                    },
                ) {
                Err(QueryFailure::ItemNotFound(id)) => id,
                other => panic!("{other:?}"),
            };
            assert_eq!(unknown(ArchiveFilter::default(), after("x")), "x");
            assert_eq!(unknown(ArchiveFilter::default(), before("y")), "y");
            let bound = ArchiveFilter {
                before_id: Some("z".into()),
                ..ArchiveFilter::default()
            };
            assert_eq!(unknown(bound, ArchivePosition::Oldest), "z");
            let elsewhere = storage.archive_query(
                "other@muc.example",
                &ArchiveQuery {
                    filter: ArchiveFilter::default(),
                    position: after("id1"),
                    limit: 5,
                },
            );
            assert!(
                matches!(elsewhere, Err(QueryFailure::ItemNotFound(_))),
                "ids are per room"
            );
        });
    }

    #[test]
    fn an_empty_or_unknown_room_has_an_empty_complete_page() {
        each_store(|store| {
            let storage = Storage::open(store).unwrap();
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Newest,
                5,
            );
            assert_eq!(
                page,
                ArchivePage {
                    complete: true,
                    ..ArchivePage::default()
                }
            );
        });
    }

    #[test]
    fn times_never_go_backwards_and_ids_are_unique_per_room() {
        each_store(|store| {
            let mut storage = Storage::open(store).unwrap();
            append_all(&mut storage, &[entry(0, 2000, "a"), entry(1, 1000, "a")]);
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Oldest,
                5,
            );
            assert_eq!(
                page.entries[1].at_ms, 2000,
                "clamped to the newest entry's time"
            );
            let mut txn = Transaction::new(Quota::default());
            assert_eq!(
                txn.archive_append(&mut storage, ROOM, &entry(0, 3000, "a")),
                Err(ArchiveWriteError::DuplicateId("id0".into()))
            );
            txn.archive_append(&mut storage, "other@muc.example", &entry(0, 3000, "a"))
                .unwrap();
        });
    }

    #[test]
    fn replace_keeps_the_entry_in_place_and_says_whether_it_found_it() {
        each_store(|store| {
            let mut storage = ten(store);
            let mut txn = Transaction::new(Quota::default());
            assert_eq!(
                txn.archive_replace(&mut storage, ROOM, "id4", "<tombstone/>"),
                Ok(true)
            );
            assert_eq!(
                txn.archive_replace(&mut storage, ROOM, "nope", "<x/>"),
                Ok(false)
            );
            storage.apply(txn.writes).unwrap();
            let page = ask(&storage, ArchiveFilter::default(), after("id3"), 1);
            assert_eq!(page.entries[0].stanza, "<tombstone/>");
            assert_eq!(
                (page.entries[0].id.as_str(), page.entries[0].at_ms),
                ("id4", 1040)
            );
        });
    }

    #[test]
    fn trim_keeps_the_newest_and_delete_forgets_the_room() {
        each_store(|store| {
            let mut storage = ten(store);
            let mut txn = Transaction::new(Quota::default());
            txn.archive_trim(&mut storage, ROOM, 3);
            storage.apply(txn.writes).unwrap();
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Oldest,
                10,
            );
            assert_eq!(ids(&page), ["id7", "id8", "id9"]);
            assert_eq!(page.count, 3);
            let mut txn = Transaction::new(Quota::default());
            txn.archive_delete(&mut storage, ROOM);
            storage.apply(txn.writes).unwrap();
            assert_eq!(
                ask(
                    &storage,
                    ArchiveFilter::default(),
                    ArchivePosition::Oldest,
                    10
                )
                .count,
                0
            );
            append_all(&mut storage, &[entry(7, 1, "a")]);
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Oldest,
                10,
            );
            assert_eq!(
                (ids(&page), page.entries[0].at_ms),
                (vec!["id7"], 1),
                "a new archive"
            );
        });
    }

    #[test]
    fn a_call_sees_its_own_writes_and_a_failed_call_leaves_no_trace() {
        each_store(|store| {
            let mut storage = ten(store);
            let mut txn = Transaction::new(Quota::default());
            txn.archive_append(&mut storage, ROOM, &entry(10, 2000, "a"))
                .unwrap();
            txn.archive_replace(&mut storage, ROOM, "id0", "<gone/>")
                .unwrap();
            txn.archive_trim(&mut storage, ROOM, 5);
            let seen = txn
                .archive_query(
                    &storage,
                    ROOM,
                    &ArchiveQuery {
                        filter: ArchiveFilter::default(),
                        position: ArchivePosition::Oldest,
                        limit: 10,
                    },
                )
                .unwrap();
            assert_eq!(ids(&seen), ["id6", "id7", "id8", "id9", "id10"]);
            storage.abandon_call();
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Oldest,
                20,
            );
            assert_eq!(page.count, 10);
            assert_eq!(page.entries[0].stanza, "<message><body>0</body></message>");
            append_all(&mut storage, &[entry(10, 2000, "a")]);
            assert_eq!(
                ask(
                    &storage,
                    ArchiveFilter::default(),
                    ArchivePosition::Newest,
                    1
                )
                .count,
                11
            );
        });
    }

    #[test]
    fn archive_writes_count_against_the_calls_caps() {
        each_store(|store| {
            let mut storage = Storage::open(store).unwrap();
            let mut txn = Transaction::new(Quota {
                max_key_bytes: 100,
                max_value_bytes: 200,
                max_call_bytes: 300,
            });
            let mut big = entry(0, 1, "a");
            big.stanza = "x".repeat(300);
            assert!(matches!(
                txn.archive_append(&mut storage, ROOM, &big),
                Err(ArchiveWriteError::Refused(StorageError::TooLarge(_)))
            ));
            assert!(matches!(txn.refused, Some(StorageError::TooLarge(_))));
            big.stanza = "x".repeat(120);
            txn.archive_append(&mut storage, ROOM, &big).unwrap();
            big.id = "id1".into();
            assert!(matches!(
                txn.archive_append(&mut storage, ROOM, &big),
                Err(ArchiveWriteError::Refused(StorageError::QuotaExceeded(_)))
            ));
        });
    }

    #[test]
    fn only_a_plugin_calls_transaction_writes_to_the_archive() {
        each_store(|store| {
            let mut storage = Storage::open(store).unwrap();
            let mut init = Transaction::default();
            init.archive_append(&mut storage, ROOM, &entry(0, 1, "a"))
                .unwrap();
            assert!(!init.is_empty() && init.archive_failure.is_some());
            assert_eq!(
                ask(
                    &storage,
                    ArchiveFilter::default(),
                    ArchivePosition::Oldest,
                    1
                )
                .count,
                0
            );
        });
    }

    #[test]
    fn a_page_stops_at_its_byte_cap() {
        each_store(|store| {
            let mut storage = Storage::open(store).unwrap();
            let entries: Vec<ArchiveEntry> = (0..3)
                .map(|n| ArchiveEntry {
                    stanza: "x".repeat(MAX_PAGE_BYTES / 2 + 1),
                    ..entry(n, n, "a")
                })
                .collect();
            let mut txn = Transaction::new(Quota {
                max_value_bytes: MAX_PAGE_BYTES,
                max_call_bytes: 4 * MAX_PAGE_BYTES,
                ..Quota::default()
            });
            for entry in &entries {
                txn.archive_append(&mut storage, ROOM, entry).unwrap();
            }
            storage.apply(txn.writes).unwrap();
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Oldest,
                10,
            );
            assert_eq!((ids(&page), page.complete), (vec!["id0"], false));
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Newest,
                10,
            );
            assert_eq!((ids(&page), page.index), (vec!["id2"], 2));
        });
    }

    #[test]
    fn the_archive_survives_a_restart_and_waits_for_the_group_commit() {
        each_store(|store| {
            {
                let mut storage = Storage::open(store).unwrap();
                append_all(&mut storage, &[entry(0, 1, "a")]);
                storage.enable_group_commit();
                append_all(&mut storage, &[entry(1, 2, "a")]);
                let mut failed = Transaction::new(Quota::default());
                failed
                    .archive_append(&mut storage, ROOM, &entry(2, 3, "a"))
                    .unwrap();
                storage.abandon_call();
                let on_disk = Storage::open(store).unwrap();
                assert_eq!(
                    ask(
                        &on_disk,
                        ArchiveFilter::default(),
                        ArchivePosition::Oldest,
                        9
                    )
                    .count,
                    1,
                    "the batch is not on disk before its sync"
                );
                drop(on_disk);
                storage.sync().unwrap();
            }
            let storage = Storage::open(store).unwrap();
            let page = ask(
                &storage,
                ArchiveFilter::default(),
                ArchivePosition::Oldest,
                9,
            );
            assert_eq!(ids(&page), ["id0", "id1"]);
        });
    }

    /// The plugin's in-memory reference (`plugin/src/memory_host.rs`), over a list oldest first.
    fn reference(archive: &[ArchiveEntry], query: &ArchiveQuery) -> Result<ArchivePage, String> {
        let position_of = |id: &str| {
            archive
                .iter()
                .position(|entry| entry.id == id)
                .ok_or_else(|| id.to_string())
        };
        let filter = &query.filter;
        let after = filter.after_id.as_deref().map(position_of).transpose()?;
        let before = filter.before_id.as_deref().map(position_of).transpose()?;
        let matching: Vec<usize> = (0..archive.len())
            .filter(|&at| {
                let entry = &archive[at];
                filter.start_ms.is_none_or(|start| entry.at_ms >= start)
                    && filter.end_ms.is_none_or(|end| entry.at_ms <= end)
                    && filter
                        .with
                        .as_ref()
                        .is_none_or(|with| &entry.sender == with)
                    && after.is_none_or(|after| at > after)
                    && before.is_none_or(|before| at < before)
                    && (filter.ids.is_empty() || filter.ids.contains(&entry.id))
            })
            .collect();
        let limit = query.limit as usize;
        let (candidates, from_oldest): (Vec<usize>, bool) = match &query.position {
            ArchivePosition::Oldest => (matching.clone(), true),
            ArchivePosition::Newest => (matching.clone(), false),
            ArchivePosition::After(id) => {
                let p = position_of(id)?;
                (
                    matching.iter().copied().filter(|&at| at > p).collect(),
                    true,
                )
            }
            ArchivePosition::Before(id) => {
                let p = position_of(id)?;
                (
                    matching.iter().copied().filter(|&at| at < p).collect(),
                    false,
                )
            }
        };
        let page: Vec<usize> = if from_oldest {
            candidates.iter().copied().take(limit).collect()
        } else {
            candidates[candidates.len().saturating_sub(limit)..].to_vec()
        };
        let index = page.first().map_or(0, |first| {
            matching.iter().filter(|&&at| at < *first).count()
        });
        Ok(ArchivePage {
            entries: page.iter().map(|&at| archive[at].clone()).collect(),
            complete: candidates.len() <= limit,
            count: matching.len() as u64,
            index: index as u64,
        })
    }

    mod against_the_reference {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::TestRunner;

        fn an_id() -> impl Strategy<Value = String> {
            (0..14u64).prop_map(|n| format!("id{n}"))
        }

        fn a_query() -> impl Strategy<Value = ArchiveQuery> {
            let filter = (
                proptest::option::of(0..200u64),
                proptest::option::of(0..200u64),
                proptest::option::of(prop_oneof!["a", "b", "c"]),
                proptest::option::weighted(0.2, an_id()),
                proptest::option::weighted(0.2, an_id()),
                proptest::collection::vec(an_id(), 0..4),
            )
                .prop_map(
                    |(start_ms, end_ms, with, after_id, before_id, ids)| ArchiveFilter {
                        start_ms,
                        end_ms,
                        with: with.map(|nick| format!("{ROOM}/{nick}")),
                        after_id,
                        before_id,
                        ids,
                    },
                );
            let position = prop_oneof![
                Just(ArchivePosition::Oldest),
                Just(ArchivePosition::Newest),
                an_id().prop_map(ArchivePosition::After),
                an_id().prop_map(ArchivePosition::Before),
            ];
            (filter, position, 0..6u32).prop_map(|(filter, position, limit)| ArchiveQuery {
                filter,
                position,
                limit,
            })
        }

        /// One store per backend for all the cases (a fresh one each would cost PostgreSQL a
        /// schema per case): each case has a room of its own.
        #[test]
        fn every_query_answers_as_the_reference_does() {
            let case = (
                proptest::collection::vec((0..40u64, 0..3usize), 0..12),
                proptest::option::of(0..12u32),
                proptest::collection::vec(a_query(), 1..8),
            );
            each_store(|store| {
                let storage = std::cell::RefCell::new(Storage::open(store).unwrap());
                let rooms = std::cell::Cell::new(0);
                let mut runner = TestRunner::new(ProptestConfig::with_cases(256));
                let outcome = runner.run(&case, |(steps, trimmed_to, queries)| {
                    let storage = &mut *storage.borrow_mut();
                    rooms.set(rooms.get() + 1);
                    let room = format!("case{}@muc.example", rooms.get());
                    let mut kept: Vec<ArchiveEntry> = Vec::new();
                    let mut at = 0;
                    for (n, (step, sender)) in steps.into_iter().enumerate() {
                        // Some times go backwards: the store clamps them as the reference does.
                        at = (at + step).saturating_sub(10);
                        let mut appended = entry(n as u64, at, ["a", "b", "c"][sender]);
                        let mut txn = Transaction::new(Quota::default());
                        txn.archive_append(storage, &room, &appended).unwrap();
                        storage.apply(txn.writes).unwrap();
                        appended.at_ms = kept.last().map_or(at, |newest| at.max(newest.at_ms));
                        kept.push(appended);
                    }
                    if let Some(keep) = trimmed_to {
                        let mut txn = Transaction::new(Quota::default());
                        txn.archive_trim(storage, &room, keep);
                        storage.apply(txn.writes).unwrap();
                        kept.drain(..kept.len().saturating_sub(keep as usize));
                    }
                    for query in queries {
                        let answer =
                            storage
                                .archive_query(&room, &query)
                                .map_err(|failure| match failure {
                                    QueryFailure::ItemNotFound(id) => id,
                                    QueryFailure::Store(error) => panic!("{error:#}"),
                                });
                        // Which unknown id is reported first is not specified: only that one is.
                        match (answer, reference(&kept, &query)) {
                            (Err(_), Err(_)) => {}
                            (answer, expected) => prop_assert_eq!(answer, expected, "{:?}", query),
                        }
                    }
                    Ok(())
                });
                if let Err(failure) = outcome {
                    panic!("{failure}");
                }
            });
        }
    }
}
