//! The database under [`super::Storage`]: what a backend (SQLite, PostgreSQL) does for it.
//!
//! Storage keeps the in-memory view, residency and group commit; a backend only stores. Its
//! transactions nest as the execution model needs: the batch's transaction (group commit) holds
//! the calls since the last sync; inside it, the call's savepoint holds the archive writes of
//! the call in progress, kept by [`Backend::apply`] or [`Backend::release_call`] and undone by
//! [`Backend::roll_back_call`].

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use super::archive::ArchiveRows;
use super::lease::{Claim, Claimed, LeaseCounts, Member};
use super::{Map, Writes};

/// Everything but the rooms, read at start.
pub struct Loaded {
    pub durable: Map,
    pub extensions: Map,
    pub timers: BTreeMap<String, u64>,
    /// Timer key to its room, where the backend keeps it (a shared store).
    pub timer_rooms: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
}

/// Keys and values, in key order.
pub type Entries = Vec<(String, Vec<u8>)>;

pub trait Backend: Send {
    /// The durable keys outside rooms, the extension tier, the timers and the host's
    /// bookkeeping (rooms are read when first used, see `residency`).
    fn load(&mut self) -> Result<Loaded>;

    /// The durable entries whose key starts with `prefix`, in key order.
    fn load_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;

    /// Whether any room is stored.
    fn has_rooms(&self) -> Result<bool>;

    /// The archive, for reads (they see the writes of the call in progress).
    fn archive(&self) -> &dyn ArchiveRows;

    /// The archive, for a write of the call in progress: inside the call's savepoint, and with
    /// `batched` (group commit) inside the batch's transaction.
    fn call_writer(&mut self, batched: bool) -> Result<&dyn ArchiveRows>;

    /// Runs `write` between calls: with `batched` inside the batch's transaction, else as a
    /// transaction of its own.
    fn write_between_calls(
        &mut self,
        batched: bool,
        write: &mut dyn FnMut(&dyn ArchiveRows) -> Result<usize>,
    ) -> Result<usize>;

    /// Durable and extension writes, timer changes and host bookkeeping together (the volatile
    /// tier in `writes` is not the database's), with the archive writes of the call in
    /// progress: one transaction, or part of the open batch. On an error nothing is kept, the
    /// call's archive writes included.
    fn apply(&mut self, writes: &Writes, meta: &[(&str, &str)]) -> Result<()>;

    /// Keeps the archive writes of the call in progress: committed now when no batch is open,
    /// else with the batch.
    fn release_call(&mut self) -> Result<()>;

    /// Undoes the archive writes of the call in progress, if it made any.
    fn roll_back_call(&mut self) -> Result<()>;

    /// Writes the batch's key writes and bookkeeping and commits them with the batch's archive
    /// writes, in one transaction. `rooms` are the rooms (`room/ROOM/`) whose durable keys or
    /// archive the batch wrote: a check about them (room leases) belongs before the commit, in
    /// the same transaction. An error, or a commit whose outcome is unknown, means the batch is
    /// not in the database.
    fn commit_batch(
        &mut self,
        writes: &Writes,
        meta: &[(&str, &str)],
        rooms: &BTreeSet<String>,
    ) -> Result<()>;

    /// After a failed batch: whatever is left of its transaction is undone, and a lost
    /// connection is opened again when next used.
    fn abandon_batch(&mut self);

    /// Several instances serve rooms from this database: this one joins them as `name` (see
    /// [`super::lease`]); from then on [`Backend::commit_batch`] fences the batch's rooms.
    fn join_cluster(&mut self, _name: &str) -> Result<()> {
        bail!("only a PostgreSQL store can be shared by several instances")
    }

    /// Before this instance serves the room `jid`: it holds the room's lease, or takes it as
    /// `claim` allows.
    fn claim(&mut self, _jid: &str, _claim: Claim) -> Result<Claimed> {
        Ok(Claimed::Held)
    }

    /// The timers of the room `jid` (key, due time), in a shared store.
    fn timers_of(&self, _jid: &str) -> Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }

    /// The extension tier's entries whose key starts with `prefix`, as the database has them, in
    /// a shared store (other instances write them too).
    fn load_extensions_prefix(&self, _prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        bail!("only a shared store is read again for what other instances wrote")
    }

    /// The extension catalog's entries (see `extension_tier`) and its generation (see
    /// `catalog_watch`), read together, in a shared store.
    fn load_catalog(&self) -> Result<(Entries, u64)> {
        bail!("only a shared store is read again for what other instances wrote")
    }

    /// The extension tier's entries of the room `jid` (see `extension_tier`), in a shared store.
    fn room_extension_entries(&self, _jid: &str) -> Result<Vec<(String, Vec<u8>)>> {
        bail!("only a shared store is read again for what other instances wrote")
    }

    /// Due timers (by `now_ms`) of rooms no live instance holds, at most `limit`, as (key, due
    /// time, room), in a shared store.
    fn orphaned_timers(&mut self, _now_ms: u64, _limit: i64) -> Result<Vec<(String, u64, String)>> {
        Ok(Vec::new())
    }

    /// The extension catalog's generation as this instance last heard of it, in a shared store
    /// (0 otherwise: nobody else changes it).
    fn catalog_generation(&self) -> u64 {
        0
    }

    /// The volatile tier's entries outside rooms whose key starts with `prefix`, as the live
    /// instances sharing the store hold them (see `shared_volatile`).
    fn load_shared_volatile(&self, _prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        bail!("only a shared store shares the volatile tier's keys outside rooms")
    }

    /// Writes this instance's volatile entries outside rooms (`writes`) and adds the
    /// differences to its counts (`counts`), inside the batch's transaction, in a shared store.
    fn write_shared_volatile(
        &mut self,
        _writes: &std::collections::BTreeMap<String, Option<Vec<u8>>>,
        _counts: &[(String, i64)],
    ) -> Result<()> {
        bail!("only a shared store shares the volatile tier's keys outside rooms")
    }

    /// Adds each difference to its count (`counts`), inside the batch's transaction: in a
    /// shared store, where other instances change the counts too.
    fn add_to_counts(&mut self, _counts: &[(String, i64)]) -> Result<()> {
        bail!("only a shared store commits counts as differences")
    }

    /// The rooms `jids` left memory: their leases go.
    fn release(&mut self, _jids: &[String]) {}

    /// Every room left memory: every lease this instance holds goes (a lease another instance
    /// took meanwhile is not this one's to give, and stays).
    fn release_all(&mut self) {}

    /// The plugin version this instance serves the data as (after any upgrade it ran); in a
    /// shared store, a commit is refused once another instance moved the data to another.
    fn serve_as(&mut self, _version: &str) {}

    /// One of the host's bookkeeping records as the database has it now.
    fn read_meta(&self, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }

    /// Whether a failure is worth retrying: a database server that may come back (PostgreSQL),
    /// not a local file whose failure means the disk is gone.
    fn is_server(&self) -> bool {
        false
    }

    /// The instances sharing the database, when it is shared.
    fn members(&mut self) -> Option<Result<Vec<Member>>> {
        None
    }

    /// This instance's leases, when it shares the database.
    fn lease_counts(&self) -> Option<LeaseCounts> {
        None
    }
}
