//! One call's buffered effects, read through on top of the committed [`Storage`].
//!
//! Nothing here touches the store but the archive: the call's writes become visible to others
//! only when the runtime hands [`Transaction::writes`] to [`Storage::apply`] after the call
//! returned `ok`. Archive writes go to the store at once, inside the call's savepoint, which
//! that apply keeps and [`Storage::abandon_call`] undoes.

use std::cmp::Ordering;
use std::iter::Peekable;

use crate::outbound::Outbound;

use super::{ArchiveEntry, ArchivePage, ArchiveQuery, QueryFailure, Storage, Tier, Writes};

/// Caps on what one call may write.
#[derive(Clone, Copy, Debug)]
pub struct Quota {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_call_bytes: usize,
}

/// The longest key the plugin's layout can make from valid JIDs: RFC 7622 caps each part at
/// 1,023 bytes, so `room/ROOM/session/FULLJID` is at most 5 + 2,047 + 9 + 3,071 bytes. Keys
/// hold every valid input whole (no hashing), and this cap still refuses nonsense.
pub const MAX_KEY_BYTES: usize = 8 * 1024;

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            max_key_bytes: MAX_KEY_BYTES,
            max_value_bytes: 1 << 20,
            max_call_bytes: 16 << 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    TooLarge(String),
    QuotaExceeded(String),
}

impl StorageError {
    /// What was refused, in the store's words.
    pub fn why(&self) -> &str {
        match self {
            StorageError::TooLarge(why) | StorageError::QuotaExceeded(why) => why,
        }
    }
}

/// Why an archive write was refused (`archive.write-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveWriteError {
    Refused(StorageError),
    DuplicateId(String),
}

/// See [`Transaction::savepoint`].
pub struct Savepoint {
    extensions: std::collections::BTreeMap<String, Option<Vec<u8>>>,
    written_bytes: usize,
}

#[derive(Debug, Default)]
pub struct Transaction {
    pub writes: Writes,
    /// Stanzas to deliver, in the order the call sent them.
    pub outbound: Vec<Outbound>,
    /// The first of the MUC logic's writes that the store refused: when the call then fails,
    /// it failed on a limit of the store (which a user's input can reach), not on a bug.
    pub refused: Option<StorageError>,
    /// The archive failed under the call (a database error): the call must fail.
    pub archive_failure: Option<String>,
    /// The call wrote, or tried to write, to the archive.
    archived: bool,
    /// The room (JID) the call is about, when it is about one: the timers it sets are that room's.
    pub room: Option<String>,
    /// Only a plugin call's transaction ([`Transaction::new`]) may write to the archive: the
    /// others (`init`, `describe`) run outside the store's call savepoint.
    may_archive: bool,
    written_bytes: usize,
    quota: Quota,
}

impl Transaction {
    pub fn new(quota: Quota) -> Transaction {
        Transaction {
            quota,
            may_archive: true,
            ..Transaction::default()
        }
    }

    /// True when the call changed nothing and sent nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.outbound.is_empty() && !self.archived
    }

    pub fn get(&self, storage: &mut Storage, tier: Tier, key: &str) -> Option<Vec<u8>> {
        match self.writes.tier(tier).get(key) {
            Some(buffered) => buffered.clone(),
            None => storage.get(tier, key).map(<[u8]>::to_vec),
        }
    }

    pub fn put(&mut self, tier: Tier, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        if key.len() > self.quota.max_key_bytes {
            return Err(StorageError::TooLarge(format!(
                "key of {} bytes, over {}",
                key.len(),
                self.quota.max_key_bytes
            )));
        }
        if value.len() > self.quota.max_value_bytes {
            return Err(StorageError::TooLarge(format!(
                "value of {} bytes, over {}",
                value.len(),
                self.quota.max_value_bytes
            )));
        }
        self.charge(key.len() + value.len())?;
        self.writes.tier_mut(tier).insert(key, Some(value));
        Ok(())
    }

    /// Counts `size` bytes against the call's quota, unless they would pass it.
    fn charge(&mut self, size: usize) -> Result<(), StorageError> {
        if self.written_bytes + size > self.quota.max_call_bytes {
            return Err(StorageError::QuotaExceeded(format!(
                "more than {} bytes written in one call",
                self.quota.max_call_bytes
            )));
        }
        self.written_bytes += size;
        Ok(())
    }

    /// An archive value of `size` bytes within the caps, charged to the call; the first
    /// refusal is remembered, as for [`Transaction::put`].
    fn charge_archive(&mut self, size: usize) -> Result<(), ArchiveWriteError> {
        let charged = if size > self.quota.max_value_bytes {
            Err(StorageError::TooLarge(format!(
                "archive entry of {size} bytes, over {}",
                self.quota.max_value_bytes
            )))
        } else {
            self.charge(size)
        };
        charged.map_err(|error| {
            self.refused.get_or_insert_with(|| error.clone());
            ArchiveWriteError::Refused(error)
        })
    }

    /// Runs an archive write of this call, or gives `fallback` when the call may not write
    /// (then it fails) or the database failed (then the call fails).
    fn archive_write<T>(
        &mut self,
        storage: &mut Storage,
        fallback: T,
        write: impl FnOnce(&mut Storage) -> anyhow::Result<T>,
    ) -> T {
        self.archived = true;
        if !self.may_archive {
            self.archive_failure
                .get_or_insert_with(|| "an archive write outside a plugin call".into());
            return fallback;
        }
        write(storage).unwrap_or_else(|error| {
            self.archive_failure
                .get_or_insert_with(|| format!("the archive failed: {error:#}"));
            fallback
        })
    }

    pub fn archive_append(
        &mut self,
        storage: &mut Storage,
        room: &str,
        entry: &ArchiveEntry,
    ) -> Result<(), ArchiveWriteError> {
        self.charge_archive(room.len() + entry.bytes())?;
        let appended = self.archive_write(storage, Ok(()), |storage| {
            storage.archive_append(room, entry)
        });
        appended.map_err(|_| ArchiveWriteError::DuplicateId(entry.id.clone()))
    }

    /// Whether an entry had this id.
    pub fn archive_replace(
        &mut self,
        storage: &mut Storage,
        room: &str,
        id: &str,
        stanza: &str,
    ) -> Result<bool, ArchiveWriteError> {
        self.charge_archive(room.len() + id.len() + stanza.len())?;
        Ok(self.archive_write(storage, false, |storage| {
            storage.archive_replace(room, id, stanza)
        }))
    }

    pub fn archive_trim(&mut self, storage: &mut Storage, room: &str, keep: u32) {
        self.archive_write(storage, (), |storage| storage.archive_trim(room, keep))
    }

    pub fn archive_delete(&mut self, storage: &mut Storage, room: &str) {
        self.archive_write(storage, (), |storage| storage.archive_delete(room))
    }

    /// A page of the room's archive, this call's writes included, or the unknown id it names.
    /// A database failure fails the call, and answers an empty page meanwhile.
    pub fn archive_query(
        &mut self,
        storage: &Storage,
        room: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, String> {
        match storage.archive_query(room, query) {
            Ok(page) => Ok(page),
            Err(QueryFailure::ItemNotFound(id)) => Err(id),
            Err(QueryFailure::Store(error)) => {
                self.archive_failure
                    .get_or_insert_with(|| format!("the archive failed: {error:#}"));
                Ok(ArchivePage {
                    complete: true,
                    ..ArchivePage::default()
                })
            }
        }
    }

    pub fn delete(&mut self, tier: Tier, key: String) {
        self.writes.tier_mut(tier).insert(key, None);
    }

    /// A write of the host's own bookkeeping (the extension catalog, a room's extension
    /// choices): not counted against, nor refused by, the caps on what the guest writes.
    pub fn put_bookkeeping(&mut self, tier: Tier, key: String, value: Vec<u8>) {
        self.writes.tier_mut(tier).insert(key, Some(value));
    }

    /// Where the extensions tier stands now, to come back to with [`Transaction::roll_back`]:
    /// a room extension's hook call writes only there.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            extensions: self.writes.extensions.clone(),
            written_bytes: self.written_bytes,
        }
    }

    pub fn roll_back(&mut self, savepoint: Savepoint) {
        self.writes.extensions = savepoint.extensions;
        self.written_bytes = savepoint.written_bytes;
    }

    /// Up to `limit` live entries under `prefix`, after `start_after`, merging the committed
    /// entries with this call's writes in key order.
    pub fn scan(
        &self,
        storage: &mut Storage,
        tier: Tier,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, Vec<u8>)> {
        self.live(storage, tier, prefix, start_after)
            .map(|(key, value)| (key.to_string(), value.clone()))
            .take(limit)
            .collect()
    }

    /// The live keys under `prefix`, without their values (for a broadcast or a deletion).
    pub fn keys(&self, storage: &mut Storage, tier: Tier, prefix: &str) -> Vec<String> {
        self.live(storage, tier, prefix, None)
            .map(|(key, _)| key.to_string())
            .collect()
    }

    /// The live entries under `prefix`, after `start_after`: the committed ones merged with this
    /// call's writes in key order.
    fn live<'a>(
        &'a self,
        storage: &'a mut Storage,
        tier: Tier,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Vec<u8>)> + 'a {
        let committed = storage
            .range(tier, prefix, start_after)
            .map(|(key, value)| (key.as_str(), Some(value)));
        let buffered = self
            .writes
            .tier(tier)
            .range(prefix.to_string()..)
            .take_while(move |(key, _)| key.starts_with(prefix))
            .filter(move |(key, _)| start_after.is_none_or(|after| key.as_str() > after))
            .map(|(key, value)| (key.as_str(), value.as_ref()));
        Merge {
            committed: committed.peekable(),
            buffered: buffered.peekable(),
        }
        .filter_map(|(key, value)| value.map(|value| (key, value)))
    }

    pub fn delete_prefix(&mut self, storage: &mut Storage, tier: Tier, prefix: &str) -> u32 {
        let live = self.keys(storage, tier, prefix);
        let count = live.len() as u32;
        for key in live {
            self.delete(tier, key);
        }
        count
    }

    pub fn set_timer(&mut self, key: String, at_ms: u64) {
        if let Some(room) = &self.room {
            self.writes.timer_rooms.insert(key.clone(), room.clone());
        }
        self.writes.timers.insert(key, Some(at_ms));
    }

    pub fn cancel_timer(&mut self, key: String) {
        self.writes.timers.insert(key, None);
    }
}

type Entry<'a> = (&'a str, Option<&'a Vec<u8>>);

/// Two key-ordered streams merged; on equal keys the call's own write wins.
struct Merge<'a, C: Iterator<Item = Entry<'a>>, B: Iterator<Item = Entry<'a>>> {
    committed: Peekable<C>,
    buffered: Peekable<B>,
}

impl<'a, C: Iterator<Item = Entry<'a>>, B: Iterator<Item = Entry<'a>>> Iterator
    for Merge<'a, C, B>
{
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let order = match (self.committed.peek(), self.buffered.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((committed, _)), Some((buffered, _))) => committed.cmp(buffered),
        };
        match order {
            Ordering::Less => self.committed.next(),
            Ordering::Greater => self.buffered.next(),
            Ordering::Equal => {
                self.committed.next();
                self.buffered.next()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(entries: &[(&str, &str)]) -> Storage {
        let mut storage = Storage::in_memory();
        let mut txn = Transaction::default();
        for (key, value) in entries {
            txn.put(Tier::Durable, key.to_string(), value.as_bytes().to_vec())
                .unwrap();
        }
        storage.apply(txn.writes).unwrap();
        storage
    }

    fn keys(entries: Vec<(String, Vec<u8>)>) -> Vec<String> {
        entries.into_iter().map(|(key, _)| key).collect()
    }

    #[test]
    fn reads_see_the_calls_own_writes_and_deletes() {
        let mut storage = committed(&[("a", "1"), ("b", "2")]);
        let mut txn = Transaction::default();
        txn.put(Tier::Durable, "a".into(), b"changed".to_vec())
            .unwrap();
        txn.delete(Tier::Durable, "b".into());
        assert_eq!(
            txn.get(&mut storage, Tier::Durable, "a"),
            Some(b"changed".to_vec())
        );
        assert_eq!(txn.get(&mut storage, Tier::Durable, "b"), None);
        assert_eq!(
            storage.get(Tier::Durable, "a"),
            Some(&b"1"[..]),
            "store untouched"
        );
    }

    #[test]
    fn scan_merges_in_key_order_and_pages() {
        let mut storage = committed(&[("p/a", "1"), ("p/c", "3"), ("p/e", "5"), ("q/z", "x")]);
        let mut txn = Transaction::default();
        txn.put(Tier::Durable, "p/b".into(), b"2".to_vec()).unwrap();
        txn.delete(Tier::Durable, "p/c".into());
        txn.put(Tier::Durable, "p/e".into(), b"five".to_vec())
            .unwrap();
        let all = txn.scan(&mut storage, Tier::Durable, "p/", None, 10);
        assert_eq!(keys(all.clone()), ["p/a", "p/b", "p/e"]);
        assert_eq!(all[2].1, b"five");
        assert_eq!(
            keys(txn.scan(&mut storage, Tier::Durable, "p/", Some("p/a"), 1)),
            ["p/b"]
        );
        assert!(txn
            .scan(&mut storage, Tier::Volatile, "p/", None, 10)
            .is_empty());
    }

    #[test]
    fn delete_prefix_counts_live_keys() {
        let mut storage = committed(&[("r/1", ""), ("r/2", ""), ("s/1", "")]);
        let mut txn = Transaction::default();
        txn.put(Tier::Durable, "r/3".into(), vec![]).unwrap();
        assert_eq!(txn.delete_prefix(&mut storage, Tier::Durable, "r/"), 3);
        assert!(txn
            .scan(&mut storage, Tier::Durable, "r/", None, 10)
            .is_empty());
        assert_eq!(
            keys(txn.scan(&mut storage, Tier::Durable, "", None, 10)),
            ["s/1"]
        );
    }

    #[test]
    fn oversized_writes_are_refused_and_not_buffered() {
        let mut txn = Transaction::new(Quota {
            max_key_bytes: 4,
            max_value_bytes: 4,
            max_call_bytes: 10,
        });
        assert!(matches!(
            txn.put(Tier::Durable, "long-key".into(), vec![]),
            Err(StorageError::TooLarge(_))
        ));
        assert!(matches!(
            txn.put(Tier::Durable, "k".into(), vec![0; 5]),
            Err(StorageError::TooLarge(_))
        ));
        txn.put(Tier::Durable, "k1".into(), vec![0; 4]).unwrap();
        assert!(matches!(
            txn.put(Tier::Durable, "k2".into(), vec![0; 4]),
            Err(StorageError::QuotaExceeded(_))
        ));
        assert!(txn.writes.durable.contains_key("k1") && !txn.writes.durable.contains_key("k2"));
    }
}
