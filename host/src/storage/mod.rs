//! The host's store: the truth for every plugin instance.
//!
//! Calls read the tiers from memory; the durable tier, the timers and the host's own bookkeeping
//! are also written to the database (a [`backend`]: SQLite, or PostgreSQL), before any stanza of
//! the call that wrote them leaves the host. A call's writes reach the store only through
//! [`Transaction`], whole.
//!
//! In a database, the durable tier is read lazily, a room at a time (see [`residency`]): start-up
//! and memory follow the rooms in use, not the rooms stored. The rooms' archives (see
//! [`archive`]) are never read whole: they stay in the database (SQLite in memory for the test
//! host), and a call's archive writes go there at once, inside a savepoint that the call's commit
//! keeps and its failure undoes.
//!
//! A batch that fails to commit (with PostgreSQL: also one whose COMMIT's outcome is unknown)
//! leaves memory as the database has it: the rooms it wrote are dropped from memory, to be read
//! again, and what is not per room is read again.

mod archive;
mod backend;
mod catalog_watch;
mod counts;
pub mod extension_tier;
pub mod lease;
mod location;
mod migrations;
mod postgres;
mod residency;
mod retention;
mod shared_volatile;
mod sqlite;
#[cfg(test)]
mod test_stores;
mod transaction;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use anyhow::Result;

pub use archive::{
    ArchiveEntry, ArchiveFilter, ArchivePage, ArchivePosition, ArchiveQuery, DuplicateId,
    QueryFailure, MAX_PAGE_BYTES, MAX_PAGE_ENTRIES,
};
use backend::Backend;
use counts::CountBases;
use lease::{Claim, Claimed, Fenced, LeaseCounts, Member};
pub use location::StoreLocation;
pub use residency::DEFAULT_IDLE as DEFAULT_ROOM_IDLE;
use residency::{Residency, Span};
use retention::Expiry;
pub use retention::Retention;
pub use transaction::{ArchiveWriteError, Quota, Savepoint, StorageError, Transaction};

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
    /// Timer key to its room's JID, where known (see [`Writes::timer_rooms`]).
    timer_rooms: BTreeMap<String, String>,
    /// The host's own records (e.g. which plugin version owns the data), never seen by plugins.
    meta: BTreeMap<String, String>,
    /// The database: the archive always; the durable tier too when `on_disk`.
    backend: Box<dyn Backend>,
    on_disk: bool,
    /// Which rooms' durable keys are in `durable` (with a disk; without one, all are).
    residency: Residency,
    /// A durable range spanning rooms, read from disk and memory for one scan.
    spanning_scan: Map,
    /// With group commit, durable writes applied in memory but not yet on disk.
    unsynced: Option<Writes>,
    /// With group commit, bookkeeping changed in memory but not yet on disk: it goes in the same
    /// disk transaction as the writes it describes (a migration and its new data owner).
    unsynced_meta: BTreeMap<String, String>,
    /// With group commit, the rooms (`room/ROOM/`) whose durable keys or archive the batch
    /// wrote, and in a shared store every room it touched: the ones to read again if it fails,
    /// and whose leases the commit checks.
    batch_rooms: BTreeSet<String>,
    /// Several instances share the database ([`Storage::join_cluster`]): rooms are leased, and
    /// what is not per room is read from the database, where the others write it too.
    shared: bool,
    /// A failed batch left what is not per room (the durable keys outside rooms, the extension
    /// tier, the timers, the bookkeeping) to be read again: nothing syncs until it is.
    reload_pending: bool,
    /// The operator's bounds on the archives, applied by [`Storage::expire_archive`].
    expiry: Expiry,
    /// In a shared store, what the batch read of the counts it may change (see [`counts`]).
    count_bases: CountBases,
    /// The same for the volatile tier's counts (see [`shared_volatile`]).
    volatile_count_bases: CountBases,
    /// In a shared store, when this instance last looked for other instances' orphaned timers.
    orphan_sweep: Option<std::time::Instant>,
    /// On a database server, what the batch's volatile writes replaced (`None`: the key was
    /// absent), put back if the batch fails: its events are handled again once the database is
    /// back, and must find the rooms as they first did (a join handled again over its own
    /// unannounced join would be taken for a presence update, and never announced).
    volatile_before_batch: Option<BTreeMap<String, Option<Vec<u8>>>>,
}

/// A batch's COMMIT that got no answer (the connection broke on the way): the batch counts as
/// failed, but the database may hold it, so its events must not be handled again.
#[derive(Debug)]
pub struct CommitOutcomeUnknown;

impl std::fmt::Display for CommitOutcomeUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("committing the batch (its outcome is unknown)")
    }
}

/// How often an instance sharing the store looks for due timers of rooms nobody alive holds,
/// and how many it adopts per look.
const ORPHAN_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const ORPHANS_PER_SWEEP: i64 = 100;

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
            timer_rooms: BTreeMap::new(),
            meta: BTreeMap::new(),
            backend: Box::new(sqlite::Sqlite::in_memory().expect("an in-memory SQLite database")),
            on_disk: false,
            residency: Residency::default(),
            spanning_scan: Map::new(),
            unsynced: None,
            unsynced_meta: BTreeMap::new(),
            batch_rooms: BTreeSet::new(),
            shared: false,
            reload_pending: false,
            expiry: Expiry::default(),
            volatile_before_batch: None,
            count_bases: CountBases::default(),
            volatile_count_bases: CountBases::default(),
            orphan_sweep: None,
        }
    }

    /// Opens (or creates, or migrates) the durable store at `location` and loads all of it but
    /// the rooms, which are read when first used; the volatile tier starts empty, as after any
    /// restart.
    pub fn open(location: &StoreLocation) -> Result<Storage> {
        let mut backend: Box<dyn Backend> = match location {
            StoreLocation::Sqlite(dir) => {
                std::fs::create_dir_all(dir)?;
                Box::new(sqlite::Sqlite::open(&dir.join(location::SQLITE_FILE))?)
            }
            StoreLocation::Postgres(config) => Box::new(postgres::Postgres::connect(config)?),
        };
        let loaded = backend.load()?;
        let mut expiry = Expiry::default();
        if backend.archive().has_deleted()? {
            expiry.note_deleted_room();
        }
        let volatile_before_batch = backend.is_server().then(BTreeMap::new);
        Ok(Storage {
            durable: loaded.durable,
            volatile: Map::new(),
            extensions: loaded.extensions,
            timers: loaded.timers,
            timer_rooms: loaded.timer_rooms,
            meta: loaded.meta,
            backend,
            on_disk: true,
            residency: Residency::lazy(),
            spanning_scan: Map::new(),
            unsynced: None,
            unsynced_meta: BTreeMap::new(),
            batch_rooms: BTreeSet::new(),
            shared: false,
            reload_pending: false,
            expiry,
            volatile_before_batch,
            count_bases: CountBases::default(),
            volatile_count_bases: CountBases::default(),
            orphan_sweep: None,
        })
    }

    /// Joins the instances sharing this database as `name`: from now on this one serves a room
    /// only under its lease, and every commit is fenced (see [`lease`]).
    pub fn join_cluster(&mut self, name: &str) -> Result<()> {
        self.backend.join_cluster(name)?;
        self.shared = true;
        Ok(())
    }

    /// The plugin version whose layout the data is in ([`DATA_OWNER_VERSION`]): in a shared store
    /// as the database has it now, since another instance may have upgraded the data.
    pub fn data_owner(&mut self) -> Result<Option<String>> {
        if self.shared {
            if let Some(owner) = self.backend.read_meta(DATA_OWNER_VERSION)? {
                self.meta.insert(DATA_OWNER_VERSION.to_string(), owner);
            }
        }
        Ok(self.meta(DATA_OWNER_VERSION).map(str::to_string))
    }

    /// This instance's plugin serves the data as `version` from now on (its upgrade, if any, is
    /// applied): in a shared store, its commits are refused once another instance upgrades the
    /// data past it.
    pub fn serve_as(&mut self, version: &str) {
        self.backend.serve_as(version);
    }

    /// Another instance upgraded the data to a new layout while this one served the old one (and
    /// took every room it rewrote): the rooms this one holds in memory, and its volatile tier,
    /// are of the old layout. They are dropped and their leases given up, so that each room is
    /// read again, and taken again, on its next use; its occupants, gone with the volatile tier,
    /// rejoin as after a restart (XEP-0410 self-ping tells them).
    pub fn forget_the_old_layout(&mut self) {
        let rooms: Vec<String> = self.residency.rooms().map(str::to_string).collect();
        for room in &rooms {
            self.drop_from_memory(Tier::Durable, room);
            self.residency.forget(room);
        }
        self.volatile.clear();
        self.backend.release_all();
    }

    /// Whether a failed sync may be retried, the database being a server that comes back.
    pub fn is_server(&self) -> bool {
        self.on_disk && self.backend.is_server()
    }

    /// The instances sharing the store (None: it is not shared), from the database.
    pub fn members(&mut self) -> Option<Result<Vec<Member>>> {
        self.backend.members()
    }

    /// This instance's leases, in a shared store.
    pub fn lease_counts(&self) -> Option<LeaseCounts> {
        self.backend.lease_counts()
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

    pub fn get(&mut self, tier: Tier, key: &str) -> Option<&[u8]> {
        // The message path reads the volatile tier most: alone on the store, it costs nothing.
        if tier == Tier::Durable || self.shared {
            match residency::room_of(key) {
                Some(room) => self.use_room(tier, room),
                None if tier == Tier::Durable && self.shared => {
                    let fresh = self.read_service_wide(key);
                    let value = fresh.get(key);
                    let written = self
                        .unsynced
                        .as_ref()
                        .is_some_and(|unsynced| unsynced.durable.contains_key(key));
                    if counts::is_count(key) && !written {
                        self.count_bases.note_read(key, value.map(Vec::as_slice));
                    }
                    match value {
                        Some(value) => self.durable.insert(key.to_string(), value.clone()),
                        None => self.durable.remove(key),
                    };
                }
                None if tier == Tier::Volatile => {
                    let fresh = self.read_shared_volatile(key);
                    let value = fresh.get(key);
                    let written = self
                        .unsynced
                        .as_ref()
                        .is_some_and(|unsynced| unsynced.volatile.contains_key(key));
                    if counts::is_count(key) && !written {
                        self.volatile_count_bases
                            .note_read(key, value.map(Vec::as_slice));
                    }
                    match value {
                        Some(value) => self.volatile.insert(key.to_string(), value.clone()),
                        None => self.volatile.remove(key),
                    };
                }
                None if tier == Tier::Extensions => {
                    if let Some(jid) = extension_tier::room_of(key) {
                        self.claim(&format!("room/{jid}/"));
                    }
                }
                None => {}
            }
        }
        self.map(tier).get(key).map(Vec::as_slice)
    }

    /// Committed entries whose key starts with `prefix`, after `start_after` when given.
    pub fn range<'a>(
        &'a mut self,
        tier: Tier,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Vec<u8>)> + 'a {
        let map = match (tier, residency::span(prefix)) {
            (tier, Span::Room(room)) => {
                self.use_room(tier, room);
                self.map(tier)
            }
            (Tier::Durable, Span::Rooms) if self.residency.is_lazy() => {
                self.spanning_scan = self.read_spanning(prefix);
                &self.spanning_scan
            }
            (Tier::Durable, Span::NoRoom) if self.shared => {
                self.spanning_scan = self.read_service_wide(prefix);
                &self.spanning_scan
            }
            (Tier::Volatile, Span::NoRoom) if self.shared => {
                self.spanning_scan = self.read_shared_volatile(prefix);
                &self.spanning_scan
            }
            // Other instances' rooms' records (an extension's removal switches it off in all).
            (Tier::Extensions, Span::Rooms) if self.shared => {
                self.spanning_scan = self.read_extensions_fresh(prefix);
                &self.spanning_scan
            }
            _ => self.map(tier),
        };
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        map.range((start, Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// The entries in memory now whose key starts with `prefix`, reading nothing from disk: the
    /// rooms in use, for gauges.
    pub fn resident<'a>(
        &'a self,
        tier: Tier,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Vec<u8>)> + 'a {
        self.map(tier)
            .range(prefix.to_string()..)
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// Rooms whose durable keys are in memory.
    pub fn resident_rooms(&self) -> usize {
        self.residency.count()
    }

    /// Reads a room's durable keys from disk unless they are in memory already, and marks the
    /// room used now.
    fn make_resident(&mut self, room: &str) {
        if !self.on_disk || self.residency.touch(room) {
            return;
        }
        match self.backend.load_prefix(room) {
            Ok(entries) => {
                self.durable.extend(entries);
                self.residency.insert(room);
            }
            // Serving on without the room could answer as if it did not exist, and overwrite
            // it: the next sync reports the failure, and nothing written since reaches the disk.
            Err(error) => self.residency.fail(error),
        }
    }

    /// Before a call uses `room`'s keys in `tier`: its lease (in a shared store), and for the
    /// durable tier the room in memory.
    fn use_room(&mut self, tier: Tier, room: &str) {
        self.claim(room);
        if tier == Tier::Durable {
            self.make_resident(room);
        }
    }

    /// In a shared store: this instance holds `room`'s lease before it serves the room (see
    /// [`lease`]), and the batch's commit checks it still does. A failed claim fails the batch.
    fn claim(&mut self, room: &str) {
        if !self.shared || self.batch_rooms.contains(room) {
            return;
        }
        let jid = room_jid(room).to_string();
        match self.backend.claim(&jid, Claim::Routed) {
            Ok(Claimed::Taken) => self.reload_room_outside_durable(&jid),
            Ok(_) => {}
            Err(error) => self.residency.fail(error),
        }
        self.batch_rooms.insert(room.to_string());
    }

    /// After taking the room `jid`'s lease: what of it is kept outside the durable tier (which
    /// is read when the room comes into memory), as the previous holder left it: its timers and
    /// its extension records.
    fn reload_room_outside_durable(&mut self, jid: &str) {
        self.reload_timers_of(jid);
        match self.backend.room_extension_entries(jid) {
            Ok(entries) => {
                let stale: Vec<String> = self
                    .resident(Tier::Extensions, &extension_tier::store_prefix(jid))
                    .map(|(key, _)| key.clone())
                    .chain([extension_tier::record_key(jid)])
                    .collect();
                for key in stale {
                    self.extensions.remove(&key);
                }
                self.extensions.extend(entries);
                self.overlay_unsynced_extensions(&extension_tier::record_key(jid));
                self.overlay_unsynced_extensions(&extension_tier::store_prefix(jid));
            }
            Err(error) => self.residency.fail(error),
        }
    }

    /// The batch's extension-tier writes under `prefix` not yet synced, put back over what was
    /// just read from the database.
    fn overlay_unsynced_extensions(&mut self, prefix: &str) {
        if let Some(unsynced) = &self.unsynced {
            overlay(&mut self.extensions, &unsynced.extensions, prefix);
        }
    }

    /// In a shared store, the extension tier's entries under `prefix` as the database has them,
    /// with this batch's writes not yet synced on top (memory left as it is).
    fn read_extensions_fresh(&mut self, prefix: &str) -> Map {
        let loaded = self.backend.load_extensions_prefix(prefix);
        self.with_unsynced(Tier::Extensions, prefix, loaded)
    }

    /// The extension catalog's generation as this instance last heard of it (0 alone on the
    /// store, where nobody else changes it): whoever follows the catalog reads it again when
    /// this passes the generation it read.
    pub fn catalog_generation(&self) -> u64 {
        self.backend.catalog_generation()
    }

    /// Reads the extension catalog again from the database, replacing memory's, in a shared
    /// store; returns the generation of what it read.
    pub fn reread_catalog(&mut self) -> Result<u64> {
        let (entries, generation) = self.backend.load_catalog()?;
        self.drop_from_memory(Tier::Extensions, extension_tier::CATALOG_PREFIX);
        self.extensions.extend(entries);
        self.overlay_unsynced_extensions(extension_tier::CATALOG_PREFIX);
        Ok(generation)
    }

    /// Reads the extension tier's entries under `prefix` (outside rooms: the catalog, a
    /// component) again from the database, replacing memory's, in a shared store; alone on the
    /// store memory is the truth and this does nothing.
    pub fn reread_extensions(&mut self, prefix: &str) -> Result<()> {
        if !self.shared {
            return Ok(());
        }
        let fresh = self.backend.load_extensions_prefix(prefix)?;
        self.drop_from_memory(Tier::Extensions, prefix);
        self.extensions.extend(fresh);
        self.overlay_unsynced_extensions(prefix);
        Ok(())
    }

    /// In a shared store, the durable keys outside rooms starting with `prefix` as the database
    /// has them (other instances write them too), with this batch's writes not yet synced on
    /// top.
    fn read_service_wide(&mut self, prefix: &str) -> Map {
        let loaded = self.backend.load_prefix(prefix).map(|entries| {
            entries
                .into_iter()
                .filter(|(key, _)| residency::room_of(key).is_none())
                .collect()
        });
        self.with_unsynced(Tier::Durable, prefix, loaded)
    }

    /// In a shared store, the volatile keys outside rooms starting with `prefix` as the live
    /// instances hold them (see [`shared_volatile`]), with this batch's writes not yet synced on
    /// top.
    fn read_shared_volatile(&mut self, prefix: &str) -> Map {
        let loaded = self.backend.load_shared_volatile(prefix);
        self.with_unsynced(Tier::Volatile, prefix, loaded)
    }

    /// What a read of `prefix` from the database `loaded`, with this batch's writes in `tier`
    /// not yet synced on top; a failed read fails the batch (see [`Residency::fail`]).
    fn with_unsynced(
        &mut self,
        tier: Tier,
        prefix: &str,
        loaded: Result<Vec<(String, Vec<u8>)>>,
    ) -> Map {
        let mut fresh: Map = match loaded {
            Ok(entries) => entries.into_iter().collect(),
            Err(error) => {
                self.residency.fail(error);
                return Map::new();
            }
        };
        if let Some(unsynced) = &self.unsynced {
            overlay(&mut fresh, unsynced.tier(tier), prefix);
        }
        fresh
    }

    /// A durable range across rooms: rooms in memory as memory has them (it may hold writes not
    /// yet synced), the others as the disk does.
    fn read_spanning(&mut self, prefix: &str) -> Map {
        if !self.on_disk {
            return Map::new();
        }
        let mut merged: Map = match self.backend.load_prefix(prefix) {
            Ok(entries) => entries
                .into_iter()
                .filter(|(key, _)| {
                    residency::room_of(key).is_none_or(|room| !self.residency.holds(room))
                })
                .collect(),
            Err(error) => {
                self.residency.fail(error);
                Map::new()
            }
        };
        merged.extend(
            self.resident(Tier::Durable, prefix)
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        merged
    }

    /// Drops from memory the durable keys of rooms unused for the idle time, unless they have
    /// occupants or writes not yet synced; returns how many rooms it dropped. Their data stays
    /// on disk and is read again on their next stanza.
    pub fn evict_idle(&mut self) -> usize {
        fn holds_keys_of<V>(map: &BTreeMap<String, V>, room: &str) -> bool {
            map.range(room.to_string()..)
                .next()
                .is_some_and(|(key, _)| key.starts_with(room))
        }
        let unsynced = self.unsynced.as_ref().map(|writes| &writes.durable);
        let volatile = &self.volatile;
        let idle = self.residency.idle(|room| {
            holds_keys_of(volatile, room)
                || unsynced.is_some_and(|writes| holds_keys_of(writes, room))
        });
        for room in &idle {
            self.drop_from_memory(Tier::Durable, room);
        }
        if self.shared {
            let rooms: Vec<String> = idle.iter().map(|room| room_jid(room).to_string()).collect();
            self.backend.release(&rooms);
        }
        idle.len()
    }

    /// Drops the keys of `tier` starting with `prefix` from memory (not from the database).
    fn drop_from_memory(&mut self, tier: Tier, prefix: &str) {
        let keys: Vec<String> = self
            .resident(tier, prefix)
            .map(|(key, _)| key.clone())
            .collect();
        let map = self.map_mut(tier);
        for key in keys {
            map.remove(&key);
        }
    }

    /// How long a room stays in memory unused (with a disk).
    pub fn set_idle_eviction(&mut self, after: std::time::Duration) {
        self.residency.set_idle(after);
    }

    pub fn is_empty(&self) -> bool {
        let nothing_on_disk = !self.on_disk || !self.backend.has_rooms().unwrap_or(true);
        self.durable.is_empty()
            && nothing_on_disk
            && self.volatile.is_empty()
            && self.timers.is_empty()
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta.get(key).map(String::as_str)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        match (self.on_disk, &self.unsynced) {
            (true, Some(_)) => {
                self.unsynced_meta
                    .insert(key.to_string(), value.to_string());
            }
            (true, None) => self.backend.apply(&Writes::default(), &[(key, value)])?,
            (false, _) => {}
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

    /// Writes the durable changes applied since the last sync (group commit), with the batch's
    /// archive writes, in one database transaction; returns how many keys and timers it wrote.
    /// An error means the batch is not in the database (with PostgreSQL, a COMMIT whose outcome
    /// is unknown counts as failed): its stanzas must not leave. Memory is then brought back to
    /// what the database holds (the rooms the batch wrote are read again on their next use), and
    /// the next sync tries again, reconnecting when the connection was lost.
    pub fn sync(&mut self) -> Result<usize> {
        let (true, Some(_)) = (self.on_disk, &self.unsynced) else {
            self.residency.check()?;
            return Ok(0);
        };
        match self.commit_batch() {
            Ok(count) => {
                if let Some(before) = &mut self.volatile_before_batch {
                    before.clear();
                }
                Ok(count)
            }
            Err(error) => {
                self.forget_batch(error.downcast_ref::<Fenced>());
                Err(error)
            }
        }
    }

    fn commit_batch(&mut self) -> Result<usize> {
        if self.reload_pending {
            self.reload_outside_rooms()?;
        }
        self.residency.check()?;
        let mut unsynced = self.unsynced.take().unwrap_or_default();
        self.unsynced = Some(Writes::default());
        let counts = self.count_bases.differences(&mut unsynced.durable);
        let volatile_counts = self
            .volatile_count_bases
            .differences(&mut unsynced.volatile);
        let count = unsynced.durable.len() + unsynced.extensions.len() + unsynced.timers.len();
        let meta: Vec<(&str, &str)> = self
            .unsynced_meta
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let rooms = std::mem::take(&mut self.batch_rooms);
        let committed = match counts.as_slice() {
            [] => Ok(()),
            counts => self.backend.add_to_counts(counts),
        }
        .and_then(
            |()| match (&unsynced.volatile, volatile_counts.as_slice()) {
                (writes, []) if writes.is_empty() => Ok(()),
                (writes, counts) => self.backend.write_shared_volatile(writes, counts),
            },
        )
        .and_then(|()| self.backend.commit_batch(&unsynced, &meta, &rooms));
        if committed.is_err() {
            // Put back for `forget_batch`, which drops them and their rooms.
            self.unsynced = Some(unsynced);
            self.batch_rooms = rooms;
        }
        committed?;
        self.unsynced_meta.clear();
        Ok(count)
    }

    /// After a failed batch: what it wrote is dropped from memory, to be read again from the
    /// database, and the volatile tier, which is not the database's, is put back as it was
    /// before the batch, but for the rooms another instance took: `fenced`, whose occupants are
    /// that instance's now.
    fn forget_batch(&mut self, fenced: Option<&Fenced>) {
        for (key, value) in self
            .volatile_before_batch
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            match value {
                Some(value) => self.volatile.insert(key, value),
                None => self.volatile.remove(&key),
            };
        }
        for room in fenced
            .map(|fenced| fenced.rooms.as_slice())
            .unwrap_or_default()
        {
            let prefix = format!("room/{room}/");
            self.drop_from_memory(Tier::Volatile, &prefix);
            self.residency.forget(&prefix);
        }
        self.backend.abandon_batch();
        self.count_bases.clear();
        self.volatile_count_bases.clear();
        let unsynced = self.unsynced.replace(Writes::default()).unwrap_or_default();
        self.unsynced_meta.clear();
        let mut rooms = std::mem::take(&mut self.batch_rooms);
        rooms.extend(
            unsynced
                .durable
                .keys()
                .filter_map(|key| residency::room_of(key).map(str::to_string)),
        );
        for room in &rooms {
            self.drop_from_memory(Tier::Durable, room);
            self.residency.forget(room);
        }
        // Whatever a failed read left unknown is in the rooms just forgotten.
        self.residency.recover();
        self.reload_pending = true;
        if let Err(error) = self.reload_outside_rooms() {
            tracing::warn!(
                error = format!("{error:#}"),
                "reading the store again after a failed batch; retrying at the next sync"
            );
        }
    }

    /// Reads again all that is not per room, replacing memory's.
    fn reload_outside_rooms(&mut self) -> Result<()> {
        let loaded = self.backend.load()?;
        self.durable
            .retain(|key, _| residency::room_of(key).is_some());
        self.durable.extend(loaded.durable);
        self.extensions = loaded.extensions;
        self.timers = loaded.timers;
        self.timer_rooms = loaded.timer_rooms;
        self.meta = loaded.meta;
        self.reload_pending = false;
        Ok(())
    }

    /// Applies a committed call's writes, with the archive writes it made: first to disk (one
    /// SQLite transaction, or the next group commit), then to the in-memory view. If the disk
    /// refuses, nothing changes (the call's archive writes are undone) and the error is
    /// returned.
    pub fn apply(&mut self, writes: Writes) -> Result<()> {
        // A room is in memory whole or not at all: read it before writing into it.
        for (tier, keys) in [
            (Tier::Durable, &writes.durable),
            (Tier::Volatile, &writes.volatile),
            (Tier::Extensions, &writes.extensions),
        ] {
            if tier != Tier::Durable && !self.shared {
                continue;
            }
            for room in keys.keys().filter_map(|key| residency::room_of(key)) {
                self.use_room(tier, room);
            }
        }
        if let Err(error) = self.residency.check() {
            self.abandon_call();
            return Err(error);
        }
        if self.on_disk && self.unsynced.is_none() {
            self.backend.apply(&writes, &[])?;
        } else {
            if let Err(error) = self.backend.release_call() {
                self.abandon_call();
                return Err(error);
            }
            if let (true, Some(unsynced)) = (self.on_disk, &mut self.unsynced) {
                self.batch_rooms.extend(
                    writes
                        .durable
                        .keys()
                        .filter_map(|key| residency::room_of(key).map(str::to_string)),
                );
                unsynced.durable.extend(writes.durable.clone());
                unsynced.extensions.extend(writes.extensions.clone());
                unsynced.timers.extend(writes.timers.clone());
                unsynced.timer_rooms.extend(writes.timer_rooms.clone());
                if self.shared {
                    unsynced.volatile.extend(
                        writes
                            .volatile
                            .iter()
                            .filter(|(key, _)| residency::room_of(key).is_none())
                            .map(|(key, value)| (key.clone(), value.clone())),
                    );
                }
            }
        }
        if let (Some(before), Some(_)) = (&mut self.volatile_before_batch, &self.unsynced) {
            for key in writes.volatile.keys() {
                if !before.contains_key(key) {
                    before.insert(key.clone(), self.volatile.get(key).cloned());
                }
            }
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
                Some(at) => {
                    if let Some(room) = writes.timer_rooms.get(&key) {
                        self.timer_rooms.insert(key.clone(), room.clone());
                    }
                    self.timers.insert(key, at)
                }
                None => {
                    self.timer_rooms.remove(&key);
                    self.timers.remove(&key)
                }
            };
        }
        Ok(())
    }

    /// The room a timer belongs to, if known.
    pub fn timer_room(&self, key: &str) -> Option<&str> {
        self.timer_rooms.get(key).map(String::as_str)
    }

    /// Whether this instance may fire the due timer `key` now. Always, unless the store is
    /// shared: then only when this instance holds the timer's room, or takes it from a dead
    /// holder (or none). A room a live instance holds is that instance's to fire: the timer is
    /// dropped from memory here (not from the database).
    pub fn may_fire(&mut self, key: &str, now_ms: u64) -> bool {
        let Some(room) = self.timer_rooms.get(key).filter(|_| self.shared).cloned() else {
            return true;
        };
        // An earlier timer's room taken over may have read this one again, moved or cancelled.
        if self.timers.get(key).is_none_or(|at| *at > now_ms) {
            return false;
        }
        match self.backend.claim(&room, Claim::Orphaned) {
            Ok(Claimed::Held) => true,
            // Its timers were just read again: this one may have changed meanwhile.
            Ok(Claimed::Taken) => {
                self.reload_timers_of(&room);
                self.timers.get(key).is_some_and(|at| *at <= now_ms)
            }
            Ok(Claimed::HeldByAnother) => {
                self.timers.remove(key);
                self.timer_rooms.remove(key);
                false
            }
            Err(error) => {
                // Read again with the room's lease, or after the next failed batch.
                tracing::warn!(key, room, "{error:#}: the timer waits");
                self.timers.remove(key);
                self.timer_rooms.remove(key);
                false
            }
        }
    }

    /// In a shared store, at most every [`ORPHAN_SWEEP_EVERY`]: the due timers (by `now_ms`) of
    /// rooms no live instance holds are added to the timers this one looks at, so that a timer
    /// set by an instance that then died is fired by a survivor ([`Storage::may_fire`] takes the
    /// room) even if no survivor had it in memory.
    pub fn adopt_orphaned_timers(&mut self, now_ms: u64) {
        if !self.shared {
            return;
        }
        let now = std::time::Instant::now();
        if self
            .orphan_sweep
            .is_some_and(|last| now - last < ORPHAN_SWEEP_EVERY)
        {
            return;
        }
        self.orphan_sweep = Some(now);
        match self.backend.orphaned_timers(now_ms, ORPHANS_PER_SWEEP) {
            Ok(orphans) => {
                for (key, at, room) in orphans {
                    self.timer_rooms.insert(key.clone(), room);
                    self.timers.insert(key, at);
                }
            }
            Err(error) => {
                tracing::warn!("looking for orphaned timers: {error:#}; looking again later")
            }
        }
    }

    /// After taking `room`'s lease: its timers as the database has them (the previous owner
    /// may have set, moved or cancelled them).
    fn reload_timers_of(&mut self, room: &str) {
        match self.backend.timers_of(room) {
            Ok(timers) => {
                let stale: Vec<String> = self
                    .timer_rooms
                    .iter()
                    .filter(|(_, of)| *of == room)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in stale {
                    self.timers.remove(&key);
                    self.timer_rooms.remove(&key);
                }
                for (key, at) in timers {
                    self.timer_rooms.insert(key.clone(), room.to_string());
                    self.timers.insert(key, at);
                }
            }
            Err(error) => self.residency.fail(error),
        }
    }
}

/// The archive (see [`archive`]): queries see the writes of the call in progress; writes are
/// the call's until [`Storage::apply`] keeps them or [`Storage::abandon_call`] undoes them.
impl Storage {
    /// With group commit on disk, a call's archive writes wait in the batch's transaction.
    fn archive_writer(&mut self, room: &str) -> Result<&dyn archive::ArchiveRows> {
        let batched = self.on_disk && self.unsynced.is_some();
        if batched {
            let room = format!("room/{room}/");
            self.claim(&room);
            self.batch_rooms.insert(room);
        }
        self.backend.call_writer(batched)
    }

    pub fn archive_append(
        &mut self,
        room: &str,
        entry: &ArchiveEntry,
    ) -> Result<Result<(), DuplicateId>> {
        archive::append(self.archive_writer(room)?, room, entry)
    }

    pub fn archive_query(
        &self,
        room: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, QueryFailure> {
        archive::query(self.backend.archive(), room, query)
    }

    pub fn archive_replace(&mut self, room: &str, id: &str, stanza: &str) -> Result<bool> {
        archive::replace(self.archive_writer(room)?, room, id, stanza)
    }

    pub fn archive_trim(&mut self, room: &str, keep: u32) -> Result<()> {
        archive::trim(self.archive_writer(room)?, room, keep)
    }

    pub fn archive_delete(&mut self, room: &str) -> Result<()> {
        archive::delete(self.archive_writer(room)?, room)?;
        self.expiry.note_deleted_room();
        Ok(())
    }

    /// Bounds the archives by age and entries per room from now on.
    pub fn set_archive_retention(&mut self, retention: Retention) {
        self.expiry.set_retention(retention);
    }

    /// Between calls: deletes a bounded chunk of the entries of deleted archives and of those
    /// past the retention bounds at `now_ms`, when a pass is due; with group commit they go with
    /// the batch's sync. Returns how many it deleted.
    pub fn expire_archive(&mut self, now_ms: u64) -> Result<usize> {
        if !self.expiry.due(now_ms) {
            return Ok(0);
        }
        let batched = self.on_disk && self.unsynced.is_some();
        let expiry = &mut self.expiry;
        self.backend
            .write_between_calls(batched, &mut |rows| expiry.pass(rows, now_ms))
    }

    /// The call in progress failed: its archive writes are undone. If even that fails, the
    /// database no longer holds what the calls committed: the next sync says so.
    pub fn abandon_call(&mut self) {
        if let Err(error) = self.backend.roll_back_call() {
            self.residency.fail(error);
        }
    }
}

/// Changes buffered by one call: `None` deletes.
#[derive(Debug, Default)]
pub struct Writes {
    pub durable: BTreeMap<String, Option<Vec<u8>>>,
    pub volatile: BTreeMap<String, Option<Vec<u8>>>,
    pub extensions: BTreeMap<String, Option<Vec<u8>>>,
    pub timers: BTreeMap<String, Option<u64>>,
    /// The room (JID) each timer set here belongs to: the room of the call that set it. In a
    /// shared store a timer fires only on the instance holding its room's lease.
    pub timer_rooms: BTreeMap<String, String>,
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

/// Puts the writes under `prefix` (`None` deletes) over `target`.
fn overlay(target: &mut Map, writes: &BTreeMap<String, Option<Vec<u8>>>, prefix: &str) {
    let written = writes
        .range(prefix.to_string()..)
        .take_while(|(key, _)| key.starts_with(prefix));
    for (key, value) in written {
        match value {
            Some(value) => target.insert(key.clone(), value.clone()),
            None => target.remove(key),
        };
    }
}

/// The JID of a room named by its key prefix (`room/ROOM/`).
fn room_jid(room: &str) -> &str {
    room.strip_prefix("room/")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or(room)
}

#[cfg(test)]
mod tests {
    use super::test_stores::{each_store, execute, terminate_sessions};
    use super::*;
    use std::time::Duration;

    fn write(storage: &mut Storage, entries: &[(&str, Option<&str>)]) {
        let mut writes = Writes::default();
        for (key, value) in entries {
            writes
                .durable
                .insert(key.to_string(), value.map(|v| v.as_bytes().to_vec()));
        }
        storage.apply(writes).unwrap();
    }

    fn keys<'a>(entries: impl Iterator<Item = (&'a String, &'a Vec<u8>)>) -> Vec<String> {
        entries.map(|(key, _)| key.clone()).collect()
    }

    /// Writes rooms `a` and `b` and one key outside any room to the store.
    fn stored_rooms(store: &StoreLocation) {
        let mut storage = Storage::open(store).unwrap();
        write(
            &mut storage,
            &[
                ("meta/layout", Some("1")),
                ("room/a@c/config", Some("A")),
                ("room/a@c/history/1", Some("a1")),
                ("room/b@c/config", Some("B")),
            ],
        );
    }

    #[test]
    fn rooms_are_read_from_disk_on_first_use_only() {
        each_store(|store| {
            stored_rooms(store);
            let mut storage = Storage::open(store).unwrap();
            assert!(!storage.is_empty(), "rooms on disk count");
            assert_eq!(storage.resident_rooms(), 0);
            assert_eq!(keys(storage.resident(Tier::Durable, "")), ["meta/layout"]);
            assert_eq!(
                storage.get(Tier::Durable, "room/a@c/config"),
                Some(&b"A"[..])
            );
            assert_eq!(storage.resident_rooms(), 1);
            assert_eq!(
                keys(storage.resident(Tier::Durable, "")),
                ["meta/layout", "room/a@c/config", "room/a@c/history/1"],
                "the whole room, and only it"
            );
            assert_eq!(storage.get(Tier::Durable, "room/new@c/config"), None);
            assert_eq!(
                keys(storage.range(Tier::Durable, "room/b@c/", None)),
                ["room/b@c/config"]
            );
            assert_eq!(storage.resident_rooms(), 3);
        });
    }

    #[test]
    fn a_scan_across_rooms_sees_memory_for_rooms_in_use_and_disk_for_the_others() {
        each_store(|store| {
            stored_rooms(store);
            let mut storage = Storage::open(store).unwrap();
            storage.enable_group_commit();
            write(
                &mut storage,
                &[
                    ("room/a@c/config", Some("A2")),
                    ("room/a@c/history/1", None),
                ],
            );
            let seen: Vec<(String, Vec<u8>)> = storage
                .range(Tier::Durable, "room/", None)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            assert_eq!(
                seen,
                [
                    ("room/a@c/config".to_string(), b"A2".to_vec()),
                    ("room/b@c/config".to_string(), b"B".to_vec()),
                ]
            );
            assert_eq!(storage.resident_rooms(), 1, "the scan loads no room");
        });
    }

    #[test]
    fn idle_rooms_leave_memory_unless_occupied_or_unsynced_and_come_back_whole() {
        each_store(|store| {
            stored_rooms(store);
            let mut storage = Storage::open(store).unwrap();
            storage.enable_group_commit();
            storage.set_idle_eviction(Duration::ZERO);
            write(&mut storage, &[("room/a@c/config", Some("A2"))]);
            storage.get(Tier::Durable, "room/b@c/config");
            let mut occupied = Writes::default();
            occupied
                .volatile
                .insert("room/b@c/occupant/n".into(), Some(b"{}".to_vec()));
            storage.apply(occupied).unwrap();
            assert_eq!(storage.evict_idle(), 0, "a is unsynced, b occupied");
            storage.sync().unwrap();
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(storage.evict_idle(), 1);
            assert_eq!(storage.resident_rooms(), 1);
            assert_eq!(
                keys(storage.resident(Tier::Durable, "room/a@c/")),
                Vec::<String>::new()
            );
            assert_eq!(
                storage.get(Tier::Durable, "room/a@c/config"),
                Some(&b"A2"[..])
            );
            assert_eq!(
                keys(storage.resident(Tier::Durable, "room/a@c/")),
                ["room/a@c/config", "room/a@c/history/1"]
            );
        });
    }

    #[test]
    fn with_group_commit_bookkeeping_reaches_the_disk_with_the_writes_it_describes() {
        each_store(|store| {
            let mut storage = Storage::open(store).unwrap();
            storage.enable_group_commit();
            let mut migration = Writes::default();
            migration
                .durable
                .insert("migrated".into(), Some(b"yes".to_vec()));
            storage.apply(migration).unwrap();
            storage.set_meta(DATA_OWNER_VERSION, "2.0.0").unwrap();
            assert_eq!(storage.meta(DATA_OWNER_VERSION), Some("2.0.0"));
            let mut on_disk = Storage::open(store).unwrap();
            assert_eq!(
                on_disk.meta(DATA_OWNER_VERSION),
                None,
                "not before the sync"
            );
            assert_eq!(on_disk.get(Tier::Durable, "migrated"), None);
            storage.sync().unwrap();
            let mut on_disk = Storage::open(store).unwrap();
            assert_eq!(on_disk.meta(DATA_OWNER_VERSION), Some("2.0.0"));
            assert_eq!(on_disk.get(Tier::Durable, "migrated"), Some(&b"yes"[..]));
        });
    }

    #[test]
    fn a_database_newer_than_the_binary_is_refused() {
        each_store(|store| {
            drop(Storage::open(store).unwrap());
            execute(store, "INSERT INTO schema_migrations VALUES (999, 0)");
            let refused = Storage::open(store).err().expect("refused");
            assert!(
                format!("{refused:#}").contains("schema version 999, newer"),
                "{refused:#}"
            );
        });
    }

    #[test]
    fn a_sqlite_store_from_before_migrations_opens_and_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreLocation::Sqlite(dir.path().to_path_buf());
        // The tables as they were before migrations were counted, holding a room.
        execute(
            &store,
            "CREATE TABLE durable (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE extensions (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE timers (key TEXT PRIMARY KEY, due_ms INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE host_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO durable VALUES ('room/a@c/config', X'41');
             INSERT INTO host_meta VALUES ('data-owner-version', '1.0.0');",
        );
        let mut storage = Storage::open(&store).unwrap();
        assert_eq!(
            storage.get(Tier::Durable, "room/a@c/config"),
            Some(&b"A"[..])
        );
        assert_eq!(storage.meta(DATA_OWNER_VERSION), Some("1.0.0"));
        let connection =
            rusqlite::Connection::open(dir.path().join(location::SQLITE_FILE)).unwrap();
        let version: u32 = connection
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(version, 1);
    }

    /// The connection breaks before the batch's COMMIT: the batch is not in the database, the
    /// rooms it wrote are read again, and the next batch reconnects.
    #[test]
    fn a_batch_whose_connection_broke_is_forgotten_and_the_next_one_reconnects() {
        each_store(|store| {
            let StoreLocation::Postgres(config) = store else {
                return;
            };
            stored_rooms(store);
            let mut storage = Storage::open(store).unwrap();
            storage.enable_group_commit();
            write(
                &mut storage,
                &[("room/a@c/config", Some("A2")), ("meta/layout", Some("2"))],
            );
            let mut txn = Transaction::new(Quota::default());
            let entry = ArchiveEntry {
                id: "m1".into(),
                at_ms: 1,
                sender: "a@c/n".into(),
                occupant_id: None,
                real_jid: None,
                stanza: "<message/>".into(),
            };
            txn.archive_append(&mut storage, "a@c", &entry).unwrap();
            storage.apply(txn.writes).unwrap();
            terminate_sessions(config);
            assert!(storage.sync().is_err(), "the batch failed");
            assert_eq!(
                storage.get(Tier::Durable, "room/a@c/config"),
                Some(&b"A"[..]),
                "read again from the database"
            );
            assert_eq!(storage.get(Tier::Durable, "meta/layout"), Some(&b"1"[..]));
            let everything = ArchiveQuery {
                filter: ArchiveFilter::default(),
                position: ArchivePosition::Oldest,
                limit: 10,
            };
            assert_eq!(storage.archive_query("a@c", &everything).unwrap().count, 0);
            write(&mut storage, &[("room/a@c/config", Some("A3"))]);
            storage.sync().unwrap();
            let mut reopened = Storage::open(store).unwrap();
            assert_eq!(
                reopened.get(Tier::Durable, "room/a@c/config"),
                Some(&b"A3"[..])
            );
        });
    }

    /// A failed batch's volatile writes are undone, and only its own: its stanzas are handled
    /// again and must find the rooms' occupants as they first did.
    #[test]
    fn a_failed_batch_puts_the_volatile_tier_back_as_the_batch_found_it() {
        each_store(|store| {
            let StoreLocation::Postgres(config) = store else {
                return;
            };
            stored_rooms(store);
            let mut storage = Storage::open(store).unwrap();
            storage.enable_group_commit();
            let volatile = |storage: &mut Storage, entries: &[(&str, Option<&str>)]| {
                let mut writes = Writes::default();
                for (key, value) in entries {
                    writes
                        .volatile
                        .insert(key.to_string(), value.map(|v| v.as_bytes().to_vec()));
                }
                storage.apply(writes).unwrap();
            };
            volatile(
                &mut storage,
                &[
                    ("room/a@c/occupant/x", Some("1")),
                    ("room/a@c/occupant/y", Some("1")),
                ],
            );
            storage.sync().unwrap();
            volatile(
                &mut storage,
                &[
                    ("room/a@c/occupant/x", Some("2")),
                    ("room/a@c/occupant/y", None),
                    ("room/a@c/occupant/z", Some("2")),
                ],
            );
            volatile(&mut storage, &[("room/a@c/occupant/x", Some("3"))]);
            write(&mut storage, &[("room/a@c/config", Some("A2"))]);
            terminate_sessions(config);
            assert!(storage.sync().is_err(), "the batch failed");
            let occupants: Vec<(String, Vec<u8>)> = storage
                .resident(Tier::Volatile, "room/a@c/")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            assert_eq!(
                occupants,
                [
                    ("room/a@c/occupant/x".to_string(), b"1".to_vec()),
                    ("room/a@c/occupant/y".to_string(), b"1".to_vec()),
                ]
            );
        });
    }

    /// Two instances sharing a PostgreSQL store (none for SQLite, which one instance owns).
    fn two_instances(store: &StoreLocation) -> Option<(Storage, Storage)> {
        let StoreLocation::Postgres(_) = store else {
            return None;
        };
        let open = |name: &str| {
            let mut storage = Storage::open(store).unwrap();
            storage.enable_group_commit();
            storage.join_cluster(name).unwrap();
            storage
        };
        Some((open("a"), open("b")))
    }

    fn count(storage: &mut Storage) -> Option<Vec<u8>> {
        storage
            .get(Tier::Durable, "meta/public-room-count")
            .map(<[u8]>::to_vec)
    }

    /// Two instances each read the count, add one and commit, in the same instant: both rooms
    /// are counted.
    #[test]
    fn counts_changed_by_two_instances_at_once_add_up() {
        each_store(|store| {
            let Some((mut a, mut b)) = two_instances(store) else {
                return;
            };
            write(&mut a, &[("meta/public-room-count", Some("3"))]);
            a.sync().unwrap();
            assert_eq!(count(&mut a).as_deref(), Some(&b"3"[..]));
            assert_eq!(count(&mut b).as_deref(), Some(&b"3"[..]));
            write(&mut a, &[("meta/public-room-count", Some("4"))]);
            write(&mut b, &[("meta/public-room-count", Some("4"))]);
            // A later call of the same batch reads the batch's own value and goes on from it.
            assert_eq!(count(&mut b).as_deref(), Some(&b"4"[..]));
            write(&mut b, &[("meta/public-room-count", Some("5"))]);
            a.sync().unwrap();
            b.sync().unwrap();
            assert_eq!(count(&mut a).as_deref(), Some(&b"6"[..]), "3 + 1 + 2");
            // A room destroyed on one while the other makes one.
            assert_eq!(count(&mut b).as_deref(), Some(&b"6"[..]));
            write(&mut a, &[("meta/public-room-count", Some("7"))]);
            write(&mut b, &[("meta/public-room-count", Some("5"))]);
            b.sync().unwrap();
            a.sync().unwrap();
            assert_eq!(count(&mut b).as_deref(), Some(&b"6"[..]));
            // Written without being read (a rebuild): the value as it is.
            write(&mut a, &[("meta/public-room-count", Some("2"))]);
            a.sync().unwrap();
            assert_eq!(count(&mut b).as_deref(), Some(&b"2"[..]));
        });
    }

    /// The volatile tier's keys outside rooms (temporary rooms' list entries, their count) are
    /// each instance's own, seen by every instance, and gone with the instance that wrote them.
    #[test]
    fn volatile_keys_outside_rooms_are_seen_by_all_and_go_with_their_writer() {
        each_store(|store| {
            let Some((mut a, mut b)) = two_instances(store) else {
                return;
            };
            let volatile = |storage: &mut Storage, entries: &[(&str, &str)]| {
                let mut writes = Writes::default();
                for (key, value) in entries {
                    writes
                        .volatile
                        .insert(key.to_string(), Some(value.as_bytes().to_vec()));
                }
                storage.apply(writes).unwrap();
            };
            let listed = |storage: &mut Storage| -> Vec<String> {
                keys(storage.range(Tier::Volatile, "public-room/", None))
            };
            let count = |storage: &mut Storage| -> Option<Vec<u8>> {
                storage
                    .get(Tier::Volatile, "meta/public-room-count")
                    .map(<[u8]>::to_vec)
            };
            volatile(
                &mut a,
                &[("public-room/x@c", "X"), ("meta/public-room-count", "1")],
            );
            volatile(
                &mut b,
                &[("public-room/y@c", "Y"), ("meta/public-room-count", "1")],
            );
            a.sync().unwrap();
            b.sync().unwrap();
            assert_eq!(listed(&mut a), ["public-room/x@c", "public-room/y@c"]);
            assert_eq!(listed(&mut b), ["public-room/x@c", "public-room/y@c"]);
            // B reads the sum and makes one more: its change is added to its own row.
            assert_eq!(count(&mut b).as_deref(), Some(&b"2"[..]));
            volatile(
                &mut b,
                &[("public-room/z@c", "Z"), ("meta/public-room-count", "3")],
            );
            b.sync().unwrap();
            assert_eq!(count(&mut a).as_deref(), Some(&b"3"[..]));
            // A is gone: its temporary room went with it, from the list and from the count.
            execute(store, "DELETE FROM instances WHERE name = 'a'");
            assert_eq!(listed(&mut b), ["public-room/y@c", "public-room/z@c"]);
            assert_eq!(count(&mut b).as_deref(), Some(&b"2"[..]));
        });
    }

    fn extension_write(storage: &mut Storage, key: &str, value: &str) {
        let mut writes = Writes::default();
        writes
            .extensions
            .insert(key.into(), Some(value.as_bytes().to_vec()));
        storage.apply(writes).unwrap();
    }

    fn extension_read(storage: &mut Storage, key: &str) -> Option<String> {
        storage
            .get(Tier::Extensions, key)
            .map(|value| String::from_utf8(value.to_vec()).unwrap())
    }

    /// B read the extension tier at start; A then serves the room and changes its owners'
    /// choices and an extension's storage; when B takes the room, it reads them again.
    #[test]
    fn a_room_taken_over_has_its_extension_records_read_again() {
        each_store(|store| {
            let Some((mut a, mut b)) = two_instances(store) else {
                return;
            };
            assert_eq!(extension_read(&mut a, "room/r@c"), None);
            extension_write(&mut a, "room/r@c", "dice on");
            extension_write(&mut a, "store/r@c/dice/rolls", "7");
            a.sync().unwrap();
            let records: Vec<(String, Vec<u8>)> = b
                .range(Tier::Extensions, "room/", None)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            assert_eq!(
                records,
                [("room/r@c".to_string(), b"dice on".to_vec())],
                "a scan of every room's records reads the database, not b's copy from its start"
            );
            extension_write(&mut b, "catalog/dice", "{}");
            b.sync().unwrap();
            assert_eq!(
                extension_read(&mut b, "room/r@c").as_deref(),
                Some("dice on"),
                "b took the room, and read its record as a left it"
            );
            assert_eq!(
                extension_read(&mut b, "store/r@c/dice/rolls").as_deref(),
                Some("7")
            );
            assert_eq!(
                extension_read(&mut b, "catalog/dice").as_deref(),
                Some("{}"),
                "what is not the room's stays"
            );
            // And back: a learns it lost the room at its next commit (as for the durable tier);
            // taking the room again, it reads b's record, not its own stale copy.
            extension_write(&mut b, "room/r@c", "dice off");
            b.sync().unwrap();
            assert_eq!(
                extension_read(&mut a, "store/r@c/dice/rolls").as_deref(),
                Some("7"),
                "a does not know yet"
            );
            extension_write(&mut a, "store/r@c/dice/rolls", "8");
            assert!(a.sync().unwrap_err().is::<Fenced>());
            assert_eq!(
                extension_read(&mut a, "room/r@c").as_deref(),
                Some("dice off")
            );
            assert_eq!(
                extension_read(&mut a, "store/r@c/dice/rolls").as_deref(),
                Some("7")
            );
        });
    }

    /// A timer set by an instance that then died, that no other instance had in memory, is
    /// found by a survivor's sweep, which takes the room and fires it.
    #[test]
    fn a_dead_instance_s_due_timer_is_adopted_by_a_survivor_s_sweep() {
        each_store(|store| {
            let Some((mut a, mut b)) = two_instances(store) else {
                return;
            };
            a.get(Tier::Durable, "room/r@c/config");
            let mut timer = Writes::default();
            timer.timers.insert("lock/r@c".into(), Some(1_000));
            timer.timer_rooms.insert("lock/r@c".into(), "r@c".into());
            a.apply(timer).unwrap();
            a.sync().unwrap();
            b.adopt_orphaned_timers(2_000);
            assert!(b.due_timers(2_000).is_empty(), "its holder is alive");
            // A is gone for good (its registration too, as when its heartbeat stopped long ago).
            execute(store, "DELETE FROM instances WHERE name = 'a'");
            b.adopt_orphaned_timers(2_000);
            assert!(b.due_timers(2_000).is_empty(), "one sweep a second at most");
            std::thread::sleep(ORPHAN_SWEEP_EVERY);
            b.adopt_orphaned_timers(2_000);
            assert_eq!(b.due_timers(2_000), ["lock/r@c"]);
            assert!(b.may_fire("lock/r@c", 2_000), "b took the room to fire it");
            assert_eq!(b.lease_counts().unwrap().takeovers, 1);
        });
    }

    /// Not a check, a figure: what one batch of the message path costs each backend (one call
    /// appending an archive entry and writing a durable key, then the batch's commit).
    /// `cargo test -p muc-host --release --lib per_batch -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn per_batch_cost_of_an_archive_append_and_sync() {
        const BATCHES: u64 = 2000;
        each_store(|store| {
            let mut storage = Storage::open(store).unwrap();
            storage.enable_group_commit();
            let started = std::time::Instant::now();
            for n in 0..BATCHES {
                let mut txn = Transaction::new(Quota::default());
                let entry = ArchiveEntry {
                    id: format!("m{n}"),
                    at_ms: n,
                    sender: "a@c/n".into(),
                    occupant_id: Some("o".into()),
                    real_jid: None,
                    stanza: "<message type='groupchat'><body>hello</body></message>".into(),
                };
                txn.archive_append(&mut storage, "a@c", &entry).unwrap();
                txn.put(
                    Tier::Durable,
                    "room/a@c/last".into(),
                    n.to_be_bytes().to_vec(),
                )
                .unwrap();
                storage.apply(txn.writes).unwrap();
                storage.sync().unwrap();
            }
            let per_batch = started.elapsed() / BATCHES as u32;
            println!("{store}: {per_batch:?} per batch (append + durable key + commit)");
            let everything = ArchiveQuery {
                filter: ArchiveFilter::default(),
                position: ArchivePosition::Newest,
                limit: 1,
            };
            assert_eq!(
                storage.archive_query("a@c", &everything).unwrap().count,
                BATCHES
            );
        });
    }
}
