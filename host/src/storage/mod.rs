//! The host's store: the truth for every plugin instance.
//!
//! Both tiers are kept in memory, where calls read them; the durable tier, the timers and the
//! host's own bookkeeping are also written to SQLite, before any stanza of the call that wrote
//! them leaves the host. A call's writes reach the store only through [`Transaction`], whole.

mod sqlite;
mod transaction;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use anyhow::Result;

pub use sqlite::Sqlite;
pub use transaction::{Quota, Savepoint, StorageError, Transaction};

/// Durability classes, as in the WIT `storage` interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    Durable,
    Volatile,
    /// Room extensions' records (catalog, each room's extension settings, the extensions' own
    /// storage): durable like `Durable`, written by the host only, never visible to the plugin.
    Extensions,
}

pub type Map = BTreeMap<String, Vec<u8>>;

/// The committed state.
pub struct Storage {
    durable: Map,
    volatile: Map,
    extensions: Map,
    /// Timer key to due time (ms since the Unix epoch).
    timers: BTreeMap<String, u64>,
    /// The host's own records (e.g. which plugin version owns the data), never seen by plugins.
    meta: BTreeMap<String, String>,
    disk: Option<Sqlite>,
    /// With group commit, durable writes applied in memory but not yet on disk.
    unsynced: Option<Writes>,
    /// With group commit, bookkeeping changed in memory but not yet on disk: it goes in the same
    /// disk transaction as the writes it describes (a migration and its new data owner).
    unsynced_meta: BTreeMap<String, String>,
}

/// The host's bookkeeping key naming the plugin version whose layout the data is in.
pub const DATA_OWNER_VERSION: &str = "data-owner-version";

impl Storage {
    /// A store that forgets everything when dropped: for the test host.
    pub fn in_memory() -> Storage {
        Storage {
            durable: Map::new(),
            volatile: Map::new(),
            extensions: Map::new(),
            timers: BTreeMap::new(),
            meta: BTreeMap::new(),
            disk: None,
            unsynced: None,
            unsynced_meta: BTreeMap::new(),
        }
    }

    /// Opens (or creates) the durable store in `dir` and loads it; the volatile tier starts
    /// empty, as after any restart.
    pub fn open(dir: &Path) -> Result<Storage> {
        std::fs::create_dir_all(dir)?;
        let disk = Sqlite::open(&dir.join("muc.sqlite3"))?;
        let loaded = disk.load()?;
        Ok(Storage {
            durable: loaded.durable,
            volatile: Map::new(),
            extensions: loaded.extensions,
            timers: loaded.timers,
            meta: loaded.meta,
            disk: Some(disk),
            unsynced: None,
            unsynced_meta: BTreeMap::new(),
        })
    }

    pub fn map(&self, tier: Tier) -> &Map {
        match tier {
            Tier::Durable => &self.durable,
            Tier::Volatile => &self.volatile,
            Tier::Extensions => &self.extensions,
        }
    }

    fn map_mut(&mut self, tier: Tier) -> &mut Map {
        match tier {
            Tier::Durable => &mut self.durable,
            Tier::Volatile => &mut self.volatile,
            Tier::Extensions => &mut self.extensions,
        }
    }

    pub fn get(&self, tier: Tier, key: &str) -> Option<&[u8]> {
        self.map(tier).get(key).map(Vec::as_slice)
    }

    /// Committed entries whose key starts with `prefix`, after `start_after` when given.
    pub fn range<'a>(
        &'a self,
        tier: Tier,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Vec<u8>)> + 'a {
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        self.map(tier)
            .range((start, Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    pub fn is_empty(&self) -> bool {
        self.durable.is_empty() && self.volatile.is_empty() && self.timers.is_empty()
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta.get(key).map(String::as_str)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        match (&mut self.disk, &self.unsynced) {
            (Some(_), Some(_)) => {
                self.unsynced_meta
                    .insert(key.to_string(), value.to_string());
            }
            (Some(disk), None) => disk.apply(&Writes::default(), &[(key, value)])?,
            (None, _) => {}
        }
        self.meta.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// Timers due at or before `now`, earliest first.
    pub fn due_timers(&self, now_ms: u64) -> Vec<String> {
        let mut due: Vec<(&u64, &String)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now_ms)
            .map(|(key, at)| (at, key))
            .collect();
        due.sort();
        due.into_iter().map(|(_, key)| key.clone()).collect()
    }

    /// The earliest timer, if any.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.values().min().copied()
    }

    /// Switches to group commit: [`Storage::apply`] only updates the in-memory view and
    /// [`Storage::sync`] writes everything applied since the last sync in one disk transaction.
    /// Whoever holds stanzas back until the sync keeps the execution model intact.
    pub fn enable_group_commit(&mut self) {
        self.unsynced.get_or_insert_with(Writes::default);
    }

    /// Writes the durable changes applied since the last sync (group commit); returns how many
    /// keys and timers it wrote. An error means the disk no longer holds what the memory does:
    /// the caller must stop serving.
    pub fn sync(&mut self) -> Result<usize> {
        let (Some(disk), Some(unsynced)) = (&mut self.disk, &mut self.unsynced) else {
            return Ok(0);
        };
        let count = unsynced.durable.len() + unsynced.extensions.len() + unsynced.timers.len();
        if count > 0 || !self.unsynced_meta.is_empty() {
            let meta: Vec<(&str, &str)> = self
                .unsynced_meta
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            disk.apply(unsynced, &meta)?;
            *unsynced = Writes::default();
            self.unsynced_meta.clear();
        }
        Ok(count)
    }

    /// Applies a committed call's writes: first to disk (one SQLite transaction, or the next
    /// group commit), then to the in-memory view. If the disk refuses, nothing changes and the
    /// error is returned.
    pub fn apply(&mut self, writes: Writes) -> Result<()> {
        match (&mut self.disk, &mut self.unsynced) {
            (Some(_), Some(unsynced)) => {
                unsynced.durable.extend(writes.durable.clone());
                unsynced.extensions.extend(writes.extensions.clone());
                unsynced.timers.extend(writes.timers.clone());
            }
            (Some(disk), None) => disk.apply(&writes, &[])?,
            (None, _) => {}
        }
        for (tier, changes) in [
            (Tier::Durable, writes.durable),
            (Tier::Volatile, writes.volatile),
            (Tier::Extensions, writes.extensions),
        ] {
            let map = self.map_mut(tier);
            for (key, value) in changes {
                match value {
                    Some(value) => map.insert(key, value),
                    None => map.remove(&key),
                };
            }
        }
        for (key, at) in writes.timers {
            match at {
                Some(at) => self.timers.insert(key, at),
                None => self.timers.remove(&key),
            };
        }
        Ok(())
    }
}

/// Changes buffered by one call: `None` deletes.
#[derive(Debug, Default)]
pub struct Writes {
    pub durable: BTreeMap<String, Option<Vec<u8>>>,
    pub volatile: BTreeMap<String, Option<Vec<u8>>>,
    pub extensions: BTreeMap<String, Option<Vec<u8>>>,
    pub timers: BTreeMap<String, Option<u64>>,
}

impl Writes {
    pub fn tier(&self, tier: Tier) -> &BTreeMap<String, Option<Vec<u8>>> {
        match tier {
            Tier::Durable => &self.durable,
            Tier::Volatile => &self.volatile,
            Tier::Extensions => &self.extensions,
        }
    }

    pub fn tier_mut(&mut self, tier: Tier) -> &mut BTreeMap<String, Option<Vec<u8>>> {
        match tier {
            Tier::Durable => &mut self.durable,
            Tier::Volatile => &mut self.volatile,
            Tier::Extensions => &mut self.extensions,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.durable.is_empty()
            && self.volatile.is_empty()
            && self.extensions.is_empty()
            && self.timers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_group_commit_bookkeeping_reaches_the_disk_with_the_writes_it_describes() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = Storage::open(dir.path()).unwrap();
        storage.enable_group_commit();
        let mut migration = Writes::default();
        migration
            .durable
            .insert("migrated".into(), Some(b"yes".to_vec()));
        storage.apply(migration).unwrap();
        storage.set_meta(DATA_OWNER_VERSION, "2.0.0").unwrap();
        assert_eq!(storage.meta(DATA_OWNER_VERSION), Some("2.0.0"));
        let on_disk = Storage::open(dir.path()).unwrap();
        assert_eq!(
            on_disk.meta(DATA_OWNER_VERSION),
            None,
            "not before the sync"
        );
        assert_eq!(on_disk.get(Tier::Durable, "migrated"), None);
        storage.sync().unwrap();
        let on_disk = Storage::open(dir.path()).unwrap();
        assert_eq!(on_disk.meta(DATA_OWNER_VERSION), Some("2.0.0"));
        assert_eq!(on_disk.get(Tier::Durable, "migrated"), Some(&b"yes"[..]));
    }
}
