//! Room leases: which instance serves which room when several share one PostgreSQL store.
//!
//! ejabberd sends every stanza for one room to the same connection (`bare_destination`), but a
//! slot changes hands when an instance restarts or ejabberd does, and a paused instance may wake
//! up after another took its place. So an instance takes a room's lease before it serves the
//! room, and every commit checks, inside its own transaction, that the instance still holds the
//! leases of the rooms the batch touched ([`fence`]): PostgreSQL itself refuses a stale owner. A
//! lease's epoch goes up on every takeover, so a room lost and taken back is not mistaken for the
//! same tenure.
//!
//! Who may take a lease ([`Claim`]): ejabberd's routing is the authority on who serves a room
//! (one connection at a time receives its stanzas), so a stanza routed here takes the room from
//! whoever held it, live or not, and the fence stops the old holder. Without a stanza (a room's
//! timers), only a dead holder's rooms are taken.
//!
//! Liveness: each instance has a row in `instances`, kept fresh by its [`Heartbeat`] on a
//! connection of its own. An instance is dead when its heartbeat is older than the lease timeout
//! or its heartbeat's database session is gone (`kill -9`, a terminated session: at once). An
//! instance restarted under the same name supersedes its previous incarnation at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use postgres::{Client, Config, GenericClient, ToStatement};

use super::catalog_watch::{self, CatalogWatch};

/// The tables, created by the PostgreSQL store's migrations.
pub const SCHEMA: &str = "
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- The heartbeat's session: when PostgreSQL no longer has it, the instance is gone.
    backend_pid INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE leases (
    room TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    -- For the log line of a takeover, when the owner's row is gone.
    owner_name TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// The condition, on `leases AS l`, that its owner is alive ($2: the lease timeout in seconds).
const OWNER_ALIVE: &str = "EXISTS (
    SELECT 1 FROM instances i JOIN pg_stat_activity a ON a.pid = i.backend_pid
    WHERE i.id = l.owner AND i.heartbeat_at > now() - make_interval(secs => $2))";

/// How often an instance says it is alive, and how long the others wait for it.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub heartbeat: Duration,
    pub timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

/// This instance, as the other instances see it.
#[derive(Clone, Debug)]
pub struct Instance {
    /// Unique per process: a restart is a new tenure.
    pub id: String,
    /// The operator's name for it (stable across restarts).
    pub name: String,
}

impl Instance {
    pub fn new(name: &str) -> Instance {
        Instance {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: name.to_string(),
        }
    }
}

/// A lease this instance holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub room: String,
    pub epoch: i64,
}

/// Why a lease is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A stanza for the room was routed here: from whoever holds it.
    Routed,
    /// The room's timers need an owner: only from a dead holder.
    Orphaned,
}

/// What taking a lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Nobody held it, or this instance already did.
    Free(Lease),
    /// Another instance held it: this one took it over.
    TakenOver {
        lease: Lease,
        from: String,
        /// The holder was alive: ejabberd moved the room's slot (or two connections receive the
        /// room's stanzas: a misconfiguration the log names).
        from_live: bool,
    },
    /// A live instance holds it and the claim may not take it.
    Held { by: String },
}

/// Takes (or keeps) `room`'s lease for `instance`, in a transaction of its own on `client`.
pub fn take(
    client: &mut Client,
    instance: &Instance,
    room: &str,
    claim: Claim,
    timing: Timing,
) -> Result<Taken> {
    let timeout = timing.timeout.as_secs_f64();
    let mut txn = client.transaction()?;
    let before = txn.query_opt(
        &format!(
            "SELECT owner, owner_name, {OWNER_ALIVE} FROM leases l WHERE room = $1 FOR UPDATE"
        ),
        &[&room, &timeout],
    )?;
    let before: Option<(String, String, bool)> =
        before.map(|row| (row.get(0), row.get(1), row.get(2)));
    let taken = match &before {
        Some((owner, name, true)) if *owner != instance.id && claim == Claim::Orphaned => {
            Taken::Held { by: name.clone() }
        }
        _ => {
            let epoch: i64 = txn
                .query_one(
                    "INSERT INTO leases AS l (room, owner, owner_name, epoch) VALUES ($1, $2, $3, 1)
                     ON CONFLICT (room) DO UPDATE SET owner = $2, owner_name = $3, taken_at = now(),
                         epoch = CASE WHEN l.owner = $2 THEN l.epoch ELSE l.epoch + 1 END
                     RETURNING epoch",
                    &[&room, &instance.id, &instance.name],
                )?
                .get(0);
            let lease = Lease {
                room: room.to_string(),
                epoch,
            };
            match before {
                Some((owner, from, from_live)) if owner != instance.id => Taken::TakenOver {
                    lease,
                    from,
                    from_live,
                },
                _ => Taken::Free(lease),
            }
        }
    };
    txn.commit()?;
    Ok(taken)
}

/// Gives `lease` up (the room left memory): another instance may take it at once.
pub fn release(client: &mut Client, instance: &Instance, lease: &Lease) -> Result<()> {
    client.execute(
        "DELETE FROM leases WHERE room = $1 AND owner = $2 AND epoch = $3",
        &[&lease.room, &instance.id, &lease.epoch],
    )?;
    Ok(())
}

/// The check every commit makes inside its transaction, before COMMIT: the leases of `held` are
/// still this instance's, at the same epochs. Their rows stay share-locked until the commit, so
/// no takeover can slip in between. Returns the rooms lost, if any (then the transaction must
/// roll back), and the plugin version the data is in, read in the same round trip.
pub fn fence<Q: ToStatement + ?Sized>(
    txn: &mut impl GenericClient,
    query: &Q,
    instance: &Instance,
    held: &[Lease],
) -> Result<FenceCheck, postgres::Error> {
    if held.is_empty() {
        return Ok(FenceCheck::default());
    }
    let rooms: Vec<&str> = held.iter().map(|lease| lease.room.as_str()).collect();
    let rows = txn.query(query, &[&rooms, &super::DATA_OWNER_VERSION])?;
    let current: std::collections::HashMap<String, (String, i64)> = rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    Ok(FenceCheck {
        lost: held
            .iter()
            .filter(|lease| current.get(&lease.room) != Some(&(instance.id.clone(), lease.epoch)))
            .map(|lease| lease.room.clone())
            .collect(),
        data_owner: rows.first().and_then(|row| row.get(3)),
    })
}

/// The fencing query ([`fence`]): the leases of $1, share-locked, with the data's owner version
/// ($2 names its key).
pub const FENCE: &str = "SELECT room, owner, epoch, (SELECT value FROM host_meta WHERE key = $2)
     FROM leases WHERE room = ANY($1) FOR SHARE OF leases";

/// Another process registered under this instance's name: this one must stop serving.
#[derive(Debug)]
pub struct Superseded {
    pub name: String,
}

impl std::fmt::Display for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "another process registered as instance {}: this one stops serving",
            self.name
        )
    }
}

impl std::error::Error for Superseded {}

/// What [`fence`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FenceCheck {
    pub lost: Vec<String>,
    /// The plugin version whose layout the data is in (the store's bookkeeping).
    pub data_owner: Option<String>,
}

/// One of the instances sharing the store, as `ctl status` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    /// It is the instance asking.
    pub this_one: bool,
    pub alive: bool,
    pub heartbeat_age_s: f64,
    /// Rooms whose lease it holds.
    pub rooms: i64,
}

/// The instances registered in the store, by name.
fn members(client: &mut Client, instance: &Instance, timing: Timing) -> Result<Vec<Member>> {
    let rows = client.query(
        "SELECT i.id, i.name,
                EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = i.backend_pid)
                    AND i.heartbeat_at > now() - make_interval(secs => $1),
                EXTRACT(EPOCH FROM now() - i.heartbeat_at)::float8,
                (SELECT count(*) FROM leases l WHERE l.owner = i.id)
         FROM instances i ORDER BY i.name",
        &[&timing.timeout.as_secs_f64()],
    )?;
    Ok(rows
        .iter()
        .map(|row| Member {
            this_one: row.get::<_, String>(0) == instance.id,
            name: row.get(1),
            alive: row.get(2),
            heartbeat_age_s: row.get(3),
            rooms: row.get(4),
        })
        .collect())
}

/// What [`Membership::claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This instance held the lease already.
    Held,
    /// It took the lease now (free, or from another instance).
    Taken,
    /// A live instance holds it, and the claim may not take it.
    HeldByAnother,
}

/// A batch touched rooms whose leases another instance took, or data another instance upgraded
/// to a plugin version this one does not run: it was rolled back, and nothing of it may leave.
#[derive(Debug)]
pub struct Fenced {
    pub rooms: Vec<String>,
    /// The plugin version another instance upgraded the data to, if that is why.
    pub upgraded_to: Option<String>,
}

impl std::fmt::Display for Fenced {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.upgraded_to {
            Some(version) => write!(
                f,
                "another instance upgraded the data to plugin {version}: this one commits nothing until it runs that version (ctl swap); the batch is rolled back, nothing of it is sent"
            ),
            None => write!(
                f,
                "another instance took over {}: the batch is rolled back, nothing of it is sent",
                self.rooms.join(", ")
            ),
        }
    }
}

impl std::error::Error for Fenced {}

/// What an instance's leases did since it started, for its metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseCounts {
    /// Rooms whose lease it holds now.
    pub held: u64,
    /// Leases it took from another instance.
    pub takeovers: u64,
    /// Batches PostgreSQL refused because another instance had taken one of their rooms.
    pub fencing_rejections: u64,
}

/// This instance's part in a shared store: who it is, its heartbeat, and the leases it holds,
/// taken on a connection of their own (a take commits at once, outside the batch's
/// transaction). Rooms are named by their JID.
pub struct Membership {
    instance: Instance,
    timing: Timing,
    config: Config,
    /// None after it broke, until the next take.
    client: Option<Client>,
    held: std::collections::HashMap<String, Lease>,
    heartbeat: Heartbeat,
    counts: LeaseCounts,
}

impl Membership {
    /// Registers `name` (superseding an earlier process of that name) and starts its heartbeat.
    pub fn join(config: &Config, name: &str, timing: Timing) -> Result<Membership> {
        let instance = Instance::new(name);
        let heartbeat = Heartbeat::start(config, &instance, timing)?;
        Ok(Membership {
            client: Some(connect(config)?),
            instance,
            timing,
            config: config.clone(),
            held: Default::default(),
            heartbeat,
            counts: LeaseCounts::default(),
        })
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Makes sure this instance holds `room`'s lease before it serves the room: nothing to do
    /// when it does, else a take as `claim` allows (logged, and counted, when it takes the room
    /// from another).
    pub fn claim(&mut self, room: &str, claim: Claim) -> Result<Claimed> {
        if self.held.contains_key(room) {
            return Ok(Claimed::Held);
        }
        let client = match &mut self.client {
            Some(client) if !client.is_closed() => client,
            slot => slot.insert(connect(&self.config)?),
        };
        match take(client, &self.instance, room, claim, self.timing)? {
            Taken::Free(lease) => {
                self.held.insert(room.to_string(), lease);
            }
            Taken::TakenOver {
                lease,
                from,
                from_live,
            } => {
                if from_live {
                    tracing::warn!(room, from, epoch = lease.epoch, "room taken over from a live instance: ejabberd routes it here now (a slot moved, or two connections share one: check domain_balancing)");
                } else {
                    tracing::info!(
                        room,
                        from,
                        epoch = lease.epoch,
                        "room taken over from an instance that is gone"
                    );
                }
                self.counts.takeovers += 1;
                self.held.insert(room.to_string(), lease);
            }
            Taken::Held { .. } => return Ok(Claimed::HeldByAnother),
        }
        Ok(Claimed::Taken)
    }

    /// The fencing check for a batch that touched `rooms`, inside its transaction on `txn`:
    /// every one must still be this instance's at the epoch it took. An error other than
    /// [`Fenced`] is the database's.
    /// `serving`: the plugin version this instance serves the data as; a commit is refused once
    /// the data is another's.
    pub fn fence<Q: ToStatement + ?Sized>(
        &mut self,
        txn: &mut impl GenericClient,
        query: &Q,
        rooms: &[String],
        serving: Option<&str>,
    ) -> Result<()> {
        let mut held = Vec::with_capacity(rooms.len());
        let mut lost: Vec<String> = Vec::new();
        for room in rooms {
            match self.held.get(room) {
                Some(lease) => held.push(lease.clone()),
                // Touched without a claim (a claim failed in the batch): not ours to commit.
                None => lost.push(room.clone()),
            }
        }
        let check = fence(txn, query, &self.instance, &held)?;
        lost.extend(check.lost);
        let upgraded_to = check
            .data_owner
            .filter(|owner| serving.is_some_and(|serving| serving != owner));
        if lost.is_empty() && upgraded_to.is_none() {
            return Ok(());
        }
        for room in &lost {
            self.held.remove(room);
        }
        self.counts.fencing_rejections += 1;
        let rooms = match upgraded_to {
            Some(_) => rooms.to_vec(),
            None => lost,
        };
        Err(Fenced { rooms, upgraded_to }.into())
    }

    /// Fails with [`Superseded`] once another process registered under this instance's name.
    pub fn check_registration(&self) -> Result<()> {
        if self.heartbeat.superseded() {
            return Err(Superseded {
                name: self.instance.name.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// Gives up the leases of `rooms` (they left memory): another instance may take them at once.
    pub fn release(&mut self, rooms: &[String]) {
        for room in rooms {
            let (Some(lease), Some(client)) = (self.held.remove(room), &mut self.client) else {
                continue;
            };
            if let Err(error) = release(client, &self.instance, &lease) {
                tracing::debug!(room, %error, "releasing a lease failed; it lapses with this instance");
            }
        }
    }

    /// This instance's id (its rows in tables it writes its own to) and how long the others
    /// wait for its heartbeat, in seconds (for queries that tell the live from the gone).
    pub fn id_and_timeout(&self) -> (&str, f64) {
        (&self.instance.id, self.timing.timeout.as_secs_f64())
    }

    /// This instance's name.
    pub fn name(&self) -> &str {
        &self.instance.name
    }

    /// Gives up every lease this instance holds.
    pub fn release_all(&mut self) {
        let rooms: Vec<String> = self.held.keys().cloned().collect();
        self.release(&rooms);
    }

    /// Every instance registered in the store.
    pub fn members(&mut self) -> Result<Vec<Member>> {
        let client = match &mut self.client {
            Some(client) if !client.is_closed() => client,
            slot => slot.insert(connect(&self.config)?),
        };
        members(client, &self.instance, self.timing)
    }

    /// The extension catalog's generation, as the heartbeat read it last (see
    /// [`catalog_watch`]).
    pub fn catalog_generation(&self) -> u64 {
        self.heartbeat.catalog.generation()
    }

    /// Due timers (by `now_ms`) of rooms no live instance holds: those of an instance that died
    /// with its rooms unserved, or of rooms whose holder let them go; at most `limit`, earliest
    /// first, as (key, due time, room). An index on the due time finds them.
    pub fn orphaned_timers(
        &mut self,
        now_ms: u64,
        limit: i64,
    ) -> Result<Vec<(String, u64, String)>> {
        let client = match &mut self.client {
            Some(client) if !client.is_closed() => client,
            slot => slot.insert(connect(&self.config)?),
        };
        let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let rows = client.query(
            &format!(
                "SELECT t.key, t.due_ms, t.room FROM timers t
                 WHERE t.due_ms <= $1 AND t.room IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.room = t.room AND {OWNER_ALIVE})
                 ORDER BY t.due_ms LIMIT $3"
            ),
            &[&now_ms, &self.timing.timeout.as_secs_f64(), &limit],
        )?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1).max(0) as u64, row.get(2)))
            .collect())
    }

    pub fn counts(&self) -> LeaseCounts {
        LeaseCounts {
            held: self.held.len() as u64,
            ..self.counts
        }
    }
}

impl Drop for Membership {
    /// A clean stop hands every room back at once (a killed instance's go when the others see it
    /// dead).
    fn drop(&mut self) {
        if let Some(client) = &mut self.client {
            let _ = client.execute("DELETE FROM leases WHERE owner = $1", &[&self.instance.id]);
        }
    }
}

/// Keeps this instance's row fresh from a thread of its own, on its own connection.
/// Each beat also reads the extension catalog's generation, into `catalog`.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    superseded: Arc<AtomicBool>,
    catalog: CatalogWatch,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Registers `instance` (superseding any previous incarnation with its name) and starts
    /// beating. Fails when the database cannot be reached now.
    pub fn start(config: &Config, instance: &Instance, timing: Timing) -> Result<Heartbeat> {
        let mut client = connect(config)?;
        let catalog = CatalogWatch::default();
        catalog.saw(register(&mut client, instance)?);
        let stop = Arc::new(AtomicBool::new(false));
        let superseded = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn({
                let (config, instance) = (config.clone(), instance.clone());
                let (stop, superseded) = (stop.clone(), superseded.clone());
                let catalog = catalog.clone();
                move || {
                    beat(
                        client,
                        &config,
                        &instance,
                        timing,
                        &stop,
                        &superseded,
                        &catalog,
                    )
                }
            })
            .context("starting the heartbeat")?;
        Ok(Heartbeat {
            stop,
            superseded,
            catalog,
            thread: Some(thread),
        })
    }

    /// True once another process registered under this instance's name: this one must stop
    /// serving (its commits would be refused anyway).
    pub fn superseded(&self) -> bool {
        self.superseded.load(Ordering::Relaxed)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// A connection of the lease machinery's own (a take commits at once, whatever the batch's
/// transaction is doing), with bounded waits: a take that waits for a paused instance's locks
/// fails (its batch with it) rather than stall this instance.
pub fn connect(config: &Config) -> Result<Client> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let mut client = config
        .connect(postgres::NoTls)
        .context("connecting to PostgreSQL for the room leases")?;
    client.batch_execute(
        "SET lock_timeout = 2000; SET statement_timeout = 5000;
         SET idle_in_transaction_session_timeout = 5000",
    )?;
    Ok(client)
}

/// Registers `instance`; returns the extension catalog's generation.
fn register(client: &mut Client, instance: &Instance) -> Result<i64> {
    let mut txn = client.transaction()?;
    txn.execute(
        "DELETE FROM instances WHERE name = $1 AND id <> $2",
        &[&instance.name, &instance.id],
    )?;
    let generation = txn
        .query_one(
            &format!(
                "INSERT INTO instances (id, name, backend_pid) VALUES ($1, $2, pg_backend_pid())
                 ON CONFLICT (id) DO UPDATE SET backend_pid = pg_backend_pid(), heartbeat_at = now()
                 RETURNING {}",
                catalog_watch::GENERATION
            ),
            &[&instance.id, &instance.name],
        )?
        .get(0);
    txn.commit()?;
    Ok(generation)
}

fn beat(
    mut client: Client,
    config: &Config,
    instance: &Instance,
    timing: Timing,
    stop: &AtomicBool,
    superseded: &AtomicBool,
    catalog: &CatalogWatch,
) {
    let beat = format!(
        "UPDATE instances SET heartbeat_at = now() WHERE id = $1 RETURNING {}",
        catalog_watch::GENERATION
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(timing.heartbeat);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let beaten = client.query_opt(&beat, &[&instance.id]);
        match beaten {
            Ok(Some(row)) => {
                catalog.saw(row.get(0));
                continue;
            }
            Ok(None) => {
                tracing::error!(
                    instance = instance.name,
                    "another process registered under this instance's name; this one stops serving"
                );
                superseded.store(true, Ordering::Relaxed);
                return;
            }
            // The database went away: beat again on a new session as soon as it is back (the
            // instance is dead to the others meanwhile, and the fencing check keeps it honest).
            Err(error) => {
                tracing::warn!(%error, "heartbeat failed; reconnecting");
                match connect(config).and_then(|mut fresh| {
                    let updated = fresh.execute(
                        "UPDATE instances SET backend_pid = pg_backend_pid(), heartbeat_at = now()
                         WHERE id = $1",
                        &[&instance.id],
                    )?;
                    Ok((fresh, updated))
                }) {
                    Ok((fresh, 1)) => client = fresh,
                    Ok((_, _)) => {
                        tracing::error!(instance = instance.name, "this instance was declared gone while the database was away; it stops serving");
                        superseded.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "heartbeat: PostgreSQL still unreachable"),
                }
            }
        }
    }
    let _ = client.execute("DELETE FROM instances WHERE id = $1", &[&instance.id]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh schema on the test cluster, or `None` (and a notice) without one.
    fn database() -> Option<(Config, Client)> {
        let Ok(url) = std::env::var("MUC_TEST_POSTGRES") else {
            eprintln!("MUC_TEST_POSTGRES unset: the lease tests did not run");
            return None;
        };
        let schema = format!("lease_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect(&url.parse().unwrap()).unwrap();
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        let config: Config = with_search_path(&url, &schema).parse().unwrap();
        let mut client = connect(&config).unwrap();
        client.batch_execute(SCHEMA).unwrap();
        // The store's bookkeeping, which the fence reads too, and the extension catalog's
        // generation, which each beat reads.
        client
            .batch_execute("CREATE TABLE host_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            .unwrap();
        client.batch_execute(catalog_watch::SCHEMA).unwrap();
        Some((config, client))
    }

    fn with_search_path(url: &str, schema: &str) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-csearch_path%3D{schema}")
    }

    const FAST: Timing = Timing {
        heartbeat: Duration::from_millis(50),
        timeout: Duration::from_millis(400),
    };

    fn orphan(client: &mut Client, instance: &Instance, room: &str, timing: Timing) -> Taken {
        take(client, instance, room, Claim::Orphaned, timing).unwrap()
    }

    fn routed(client: &mut Client, instance: &Instance, room: &str, timing: Timing) -> Taken {
        take(client, instance, room, Claim::Routed, timing).unwrap()
    }

    fn lease(room: &str, epoch: i64) -> Lease {
        Lease {
            room: room.into(),
            epoch,
        }
    }

    #[test]
    fn timers_take_only_a_dead_owners_rooms_and_routing_takes_any_at_a_higher_epoch() {
        let Some((url, mut client)) = database() else {
            return;
        };
        let (a, b) = (Instance::new("a"), Instance::new("b"));
        let beat_a = Heartbeat::start(&url, &a, FAST).unwrap();
        let _beat_b = Heartbeat::start(&url, &b, FAST).unwrap();
        assert_eq!(
            orphan(&mut client, &a, "r@muc", FAST),
            Taken::Free(lease("r@muc", 1))
        );
        assert_eq!(
            routed(&mut client, &a, "r@muc", FAST),
            Taken::Free(lease("r@muc", 1)),
            "taking one's own lease again changes nothing"
        );
        assert_eq!(
            orphan(&mut client, &b, "r@muc", FAST),
            Taken::Held { by: "a".into() }
        );
        assert_eq!(
            routed(&mut client, &b, "r@muc", FAST),
            Taken::TakenOver {
                lease: lease("r@muc", 2),
                from: "a".into(),
                from_live: true
            }
        );
        assert_eq!(
            fence(&mut client, FENCE, &a, &[lease("r@muc", 1)])
                .unwrap()
                .lost,
            ["r@muc"]
        );
        assert!(fence(&mut client, FENCE, &b, &[lease("r@muc", 2)])
            .unwrap()
            .lost
            .is_empty());

        assert_eq!(
            orphan(&mut client, &a, "s@muc", FAST),
            Taken::Free(lease("s@muc", 1))
        );
        drop(beat_a);
        assert_eq!(
            orphan(&mut client, &b, "s@muc", FAST),
            Taken::TakenOver {
                lease: lease("s@muc", 2),
                from: "a".into(),
                from_live: false
            },
            "a stopped beating: at once, its row is gone"
        );
    }

    #[test]
    fn a_terminated_session_frees_the_rooms_at_once_and_a_paused_owner_after_the_timeout() {
        let Some((url, mut client)) = database() else {
            return;
        };
        let (a, b) = (Instance::new("a"), Instance::new("b"));
        // Slow beats: the heartbeat must not reconnect before b looks.
        let slow = Timing {
            heartbeat: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
        };
        let _beat_a = Heartbeat::start(&url, &a, slow).unwrap();
        assert_eq!(
            orphan(&mut client, &a, "r@muc", slow),
            Taken::Free(lease("r@muc", 1))
        );
        client
            .execute(
                "SELECT pg_terminate_backend(backend_pid, 5000) FROM instances WHERE id = $1",
                &[&a.id],
            )
            .unwrap();
        let taken = orphan(&mut client, &b, "r@muc", slow);
        assert!(
            matches!(
                taken,
                Taken::TakenOver {
                    from_live: false,
                    ..
                }
            ),
            "{taken:?}"
        );

        // A paused owner: its session lives on, its heartbeat stops.
        let c = Instance::new("c");
        client
            .execute(
                "INSERT INTO instances (id, name, backend_pid) VALUES ($1, 'c', pg_backend_pid())",
                &[&c.id],
            )
            .unwrap();
        assert_eq!(
            orphan(&mut client, &c, "s@muc", FAST),
            Taken::Free(lease("s@muc", 1))
        );
        assert_eq!(
            orphan(&mut client, &b, "s@muc", FAST),
            Taken::Held { by: "c".into() }
        );
        std::thread::sleep(FAST.timeout + Duration::from_millis(100));
        assert!(matches!(
            orphan(&mut client, &b, "s@muc", FAST),
            Taken::TakenOver {
                from_live: false,
                ..
            }
        ));
    }

    #[test]
    fn a_restart_under_the_same_name_supersedes_the_old_process() {
        let Some((url, mut client)) = database() else {
            return;
        };
        let old = Instance::new("muc-1");
        let old_beat = Heartbeat::start(&url, &old, FAST).unwrap();
        assert_eq!(
            orphan(&mut client, &old, "r@muc", FAST),
            Taken::Free(lease("r@muc", 1))
        );
        let new = Instance::new("muc-1");
        let _new_beat = Heartbeat::start(&url, &new, FAST).unwrap();
        assert!(matches!(
            orphan(&mut client, &new, "r@muc", FAST),
            Taken::TakenOver {
                from_live: false,
                ..
            }
        ));
        std::thread::sleep(FAST.heartbeat * 4);
        assert!(old_beat.superseded());
    }

    #[test]
    fn the_fence_holds_off_a_takeover_until_the_commit_and_a_released_room_is_free() {
        let Some((url, mut client)) = database() else {
            return;
        };
        let (a, b) = (Instance::new("a"), Instance::new("b"));
        let mut a_store = connect(&url).unwrap();
        let first = routed(&mut a_store, &a, "r@muc", FAST);
        assert_eq!(first, Taken::Free(lease("r@muc", 1)));
        let mut batch = a_store.transaction().unwrap();
        assert!(fence(&mut batch, FENCE, &a, &[lease("r@muc", 1)])
            .unwrap()
            .lost
            .is_empty());
        let taker = std::thread::spawn({
            let (url, b) = (url.clone(), b.clone());
            move || routed(&mut connect(&url).unwrap(), &b, "r@muc", FAST)
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!taker.is_finished(), "the takeover waits for a's commit");
        batch.commit().unwrap();
        assert!(matches!(taker.join().unwrap(), Taken::TakenOver { .. }));
        assert_eq!(
            fence(&mut a_store, FENCE, &a, &[lease("r@muc", 1)])
                .unwrap()
                .lost,
            ["r@muc"]
        );

        let Taken::Free(s) = routed(&mut client, &b, "s@muc", FAST) else {
            panic!("free")
        };
        release(&mut client, &b, &s).unwrap();
        assert_eq!(
            orphan(&mut client, &a, "s@muc", FAST),
            Taken::Free(lease("s@muc", 1)),
            "a released lease starts over"
        );
    }
}
