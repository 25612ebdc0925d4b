//! Room extensions: third-party components a room owner switches on in one room, run by the host
//! under its limits (`wit/extension/room-extension.wit`).
//!
//! The MUC plugin calls in at each hook point (`muc:plugin/extensions`); this module finds the
//! room's enabled extensions, runs each hook in its sandbox as a savepoint of the plugin's call,
//! and turns what they did into one outcome. Faults are contained here: the extension's writes
//! and messages are undone, the owners are told, and after `faults_before_off` faults it is
//! switched off in that room. The plugin never sees a fault.

mod call_clock;
pub mod catalog;
mod compiler;
mod engine;
mod hooks;
mod limits;
mod loading;
mod occupant_ids;
pub mod rooms;
mod sandbox;
mod stderr;
pub mod template;
mod text;

use minidom::rxml::xml_ncname;
use minidom::Element;
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::lending::Place;
use crate::storage::{extension_tier, Storage, Tier, Transaction};
use crate::wasm::plugin_world::muc::plugin::extensions as wit;
pub use catalog::Entry;
pub use compiler::{Compiled, ExtensionCompiler};
pub use limits::{AskedLimits, ExtensionLimits, Granted, MAX_CALL_BUDGET};
use rooms::{Choice, RoomRecord};
use sandbox::Instance;

/// The MUC call a hook runs inside: the store lent to it, the call's transaction, its instant.
pub struct Call<'a> {
    /// Always holding the store: a hook lends it on to the extension's instance (see
    /// [`crate::lending`]).
    storage: &'a mut Place<Storage>,
    pub txn: &'a mut Transaction,
    pub now_ms: u64,
}

impl<'a> Call<'a> {
    /// A call around the store in `storage`; none when `storage` holds none.
    pub fn new(
        storage: &'a mut Place<Storage>,
        txn: &'a mut Transaction,
        now_ms: u64,
    ) -> Option<Call<'a>> {
        storage.get()?;
        Some(Call {
            storage,
            txn,
            now_ms,
        })
    }

    /// The store, and the call's transaction over it.
    fn store(&mut self) -> (&mut Storage, &mut Transaction) {
        // Made holding the store, and a hook's loan gives it back before returning.
        (self.storage.held_mut(), self.txn)
    }
}

/// The installed extensions and their live instances, owned by the plugin runtime (which lends
/// them to each MUC call, for its hooks) and changed by the service (installing and removing).
pub struct Extensions {
    compiler: ExtensionCompiler,
    installed: BTreeMap<String, Compiled>,
    /// Catalog entries that did not load at start (name, entry, why): listed and removable.
    broken: BTreeMap<String, (Entry, String)>,
    /// One instance per (extension, room), made on first use, dropped after a fault, and the
    /// least recently used dropped past [`MAX_INSTANCES`].
    instances: HashMap<(String, String), (Instance, u64)>,
    /// Counts hook calls, to know which instance was used least recently.
    calls: u64,
    /// When each (extension, room) said something in the last minute.
    said_at: HashMap<(String, String), VecDeque<u64>>,
    /// The store's catalog generation last followed (see [`Extensions::follow_catalog`]).
    catalog_followed: u64,
}

/// Live instances kept at once: memory is capped per instance, this caps their number (and
/// each extension's own cap, [`Granted::instances`], is within it).
pub const MAX_INSTANCES: usize = 256;
/// Extensions one room may have on at once: each may take two hook calls per message, and all
/// of them run inside one MUC call, with its own time budget.
pub const MAX_PER_ROOM: usize = 4;
/// The longest body a rewrite may give a message.
const MAX_REWRITE_BYTES: usize = 64 << 10;

/// An operator's change to the catalog (`muc-host ext add/remove`).
pub enum Change {
    /// Install, or replace the installed version; `rooms` limits where owners may switch it on.
    Install {
        compiled: Box<Compiled>,
        rooms: Option<Vec<String>>,
    },
    Remove(String),
}

impl Extensions {
    pub fn new(compiler: ExtensionCompiler) -> Extensions {
        Extensions {
            compiler,
            installed: BTreeMap::new(),
            broken: BTreeMap::new(),
            instances: HashMap::new(),
            calls: 0,
            said_at: HashMap::new(),
            catalog_followed: 0,
        }
    }

    pub fn compiler(&self) -> &ExtensionCompiler {
        &self.compiler
    }

    fn limits(&self) -> ExtensionLimits {
        self.compiler.limits()
    }

    /// Compiles every extension the store's catalog lists (at start). One that no longer compiles
    /// is logged, listed as not loaded and left out; its rooms keep their settings for when it
    /// is installed again, and `remove` still removes it.
    pub fn load(&mut self, storage: &mut Storage) {
        for entry in Extensions::catalog(storage) {
            match self.compile_stored(&entry, storage) {
                Ok(compiled) => {
                    self.installed.insert(entry.name.clone(), compiled);
                }
                Err(error) => {
                    tracing::error!(
                        extension = entry.name,
                        "room extension not loaded: {error:#}"
                    );
                    self.broken
                        .insert(entry.name.clone(), (entry, format!("{error:#}")));
                }
            }
        }
    }

    /// The catalog as stored, without compiling anything.
    pub fn catalog(storage: &Storage) -> Vec<Entry> {
        storage
            .resident(Tier::Extensions, "catalog/")
            .filter_map(|(_, value)| serde_json::from_slice(value).ok())
            .collect()
    }

    /// The installed extensions, and those that did not load (with why).
    pub fn list(&self) -> Vec<(Entry, Option<String>)> {
        let loaded = self.installed.values().map(|c| (c.entry.clone(), None));
        let broken = self
            .broken
            .values()
            .map(|(entry, why)| (entry.clone(), Some(why.clone())));
        loaded.chain(broken).collect()
    }

    /// Installs `compiled` (or replaces the installed version of the same name: its rooms keep
    /// their settings and storage, their next hook runs the new version). The catalog's writes go
    /// into `txn`.
    pub fn install(&mut self, compiled: Compiled, txn: &mut Transaction) -> anyhow::Result<()> {
        let name = compiled.entry.name.clone();
        txn.put_bookkeeping(
            Tier::Extensions,
            catalog::catalog_key(&name),
            serde_json::to_vec(&compiled.entry)?,
        );
        txn.put_bookkeeping(
            Tier::Extensions,
            catalog::component_key(&name),
            compiled.bytes.to_vec(),
        );
        self.instances
            .retain(|(extension, _), _| *extension != name);
        self.broken.remove(&name);
        self.installed.insert(name, compiled);
        Ok(())
    }

    /// Applies an operator's change inside `call` (the catalog's writes, the owners' notices);
    /// returns what to tell the operator.
    pub fn change(&mut self, change: Change, call: &mut Call) -> anyhow::Result<String> {
        match change {
            Change::Install {
                mut compiled,
                rooms,
            } => {
                compiled.entry.rooms = rooms;
                let entry = compiled.entry.clone();
                let replaced = self
                    .installed
                    .get(&entry.name)
                    .map(|c| c.entry.version.clone());
                self.install(*compiled, call.txn)?;
                let allowed = entry.allowed_rooms();
                let limits = entry.limits;
                Ok(match replaced {
                    Some(old) => format!(
                        "replaced {} {old} by {}: rooms that use it keep their settings and storage (allowed in {allowed}; {limits})",
                        entry.name, entry.version
                    ),
                    None => format!("installed {} {} (allowed in {allowed}; {limits})", entry.name, entry.version),
                })
            }
            Change::Remove(name) => {
                let rooms = self.remove(&name, call)?;
                Ok(format!(
                    "removed {name}; it was switched off in {rooms} room(s), whose owners are told"
                ))
            }
        }
    }

    /// Installs `compiled` switched on in every room, in memory only (the test host's store is
    /// fresh for each script; `muc-host check --extension`).
    pub fn install_everywhere(&mut self, mut compiled: Compiled) {
        compiled.entry.rooms = None;
        compiled.entry.on_by_default = true;
        self.installed.insert(compiled.entry.name.clone(), compiled);
    }

    /// Uninstalls `name`: it is switched off in every room that had it on, and those rooms'
    /// owners are told (the notices go into `txn.outbound`). Its storage is kept, for a
    /// reinstallation. Returns how many rooms had it on.
    pub fn remove(&mut self, name: &str, call: &mut Call) -> anyhow::Result<usize> {
        let Some(removed) = self
            .installed
            .get(name)
            .map(|c| c.entry.clone())
            .or_else(|| self.broken.get(name).map(|(entry, _)| entry.clone()))
        else {
            anyhow::bail!("no extension named '{name}' is installed");
        };
        let records: Vec<(String, Vec<u8>)> = {
            let (storage, txn) = call.store();
            txn.scan(storage, Tier::Extensions, "room/", None, usize::MAX)
        };
        let mut rooms_using = 0;
        for (key, value) in records {
            let room = key["room/".len()..].to_string();
            let Ok(mut record) = serde_json::from_slice::<RoomRecord>(&value) else {
                continue;
            };
            if !removed.allowed_in(&room) || !record.choice(&removed).enabled {
                continue;
            }
            rooms_using += 1;
            record.extensions.remove(name);
            record.ticks.remove(name);
            notify_owners(
                call.txn,
                &room,
                &record.owners,
                &format!(
                    "The room extension '{name}' was uninstalled by the service's operator: it is \
                     switched off in {room}."
                ),
            );
            save(call.txn, &room, &record);
        }
        call.txn
            .delete(Tier::Extensions, catalog::catalog_key(name));
        call.txn
            .delete(Tier::Extensions, catalog::component_key(name));
        self.unload(name);
        Ok(rooms_using)
    }

    /// The extensions that take part in `room`'s events, in name order, with the room's choices.
    fn enabled(&self, record: &RoomRecord, room: &str) -> Vec<(Entry, Choice)> {
        self.installed
            .values()
            .filter(|c| c.entry.allowed_in(room) && record.takes_part(&c.entry))
            .map(|c| (c.entry.clone(), record.choice(&c.entry)))
            .collect()
    }

    pub fn active(&self, call: &mut Call, room: &str) -> bool {
        if self.installed.is_empty() {
            return false;
        }
        let record = load(call, room);
        self.installed
            .values()
            .any(|c| c.entry.allowed_in(room) && record.takes_part(&c.entry))
    }

    /// What a message hook needs: every occupant only when an enabled extension may read the
    /// room; otherwise only those holding a nick an extension speaks as (what it says must not
    /// take an occupant's nickname), usually nobody.
    pub fn message_hooks(&self, call: &mut Call, room: &str) -> wit::MessageHooksNeed {
        if self.installed.is_empty() {
            return wit::MessageHooksNeed::None;
        }
        let record = load(call, room);
        // Asked at every message: the catalog entries are looked at, not copied.
        let mut any = false;
        let mut speaking = Vec::new();
        for compiled in self.installed.values() {
            let entry = &compiled.entry;
            if !entry.allowed_in(room) || !record.takes_part(entry) {
                continue;
            }
            if compiled.entry.reads_occupants {
                return wit::MessageHooksNeed::WithOccupants;
            }
            any = true;
            speaking.extend(record.speaks_as(entry));
        }
        if any {
            wit::MessageHooksNeed::OccupantsNamed(speaking)
        } else {
            wit::MessageHooksNeed::None
        }
    }

    pub fn form_fields(&self, call: &mut Call, room: &str) -> Vec<wit::FormField> {
        let record = load(call, room);
        self.installed
            .values()
            .filter(|c| c.entry.allowed_in(room))
            .flat_map(|c| rooms::form_fields(&c.entry, &record.choice(&c.entry)))
            .collect()
    }

    pub fn configure(
        &mut self,
        call: &mut Call,
        room: wit::Room,
        submitted: Vec<wit::SubmittedField>,
    ) -> Result<wit::Configured, String> {
        let mut record = load(call, &room.jid);
        let before = record.clone();
        let occupant_nicks: Vec<&str> = room.occupants.iter().map(|o| o.nick.as_str()).collect();
        let mut changed = false;
        for compiled in self.installed.values() {
            let entry = &compiled.entry;
            if !entry.allowed_in(&room.jid) {
                continue;
            }
            let choice = record.choice(entry);
            let chosen = rooms::apply_form(entry, choice.clone(), &submitted, &occupant_nicks)?;
            // A form that leaves an extension as it was records nothing for it.
            if chosen != choice {
                changed = true;
                record.extensions.insert(entry.name.clone(), chosen);
            }
        }
        let mut enabled = self.enabled(&record, &room.jid);
        if enabled.len() > MAX_PER_ROOM {
            return Err(format!(
                "a room may have at most {MAX_PER_ROOM} extensions switched on"
            ));
        }
        let mut nicks: Vec<&str> = enabled
            .iter()
            .filter_map(|(e, c)| e.nick.as_ref().and(c.nick.as_deref()))
            .collect();
        nicks.sort();
        if let Some(twice) = nicks.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!(
                "two extensions cannot both speak as '{}'",
                twice[0]
            ));
        }
        record.owners = room.owners;
        enabled.retain(|(entry, _)| entry.tick_seconds.is_some());
        let next_tick = hooks::next_tick(&mut record, &enabled, call.now_ms, true);
        if record != before {
            save(call.txn, &room.jid, &record);
        }
        Ok(wit::Configured { changed, next_tick })
    }

    /// The room is gone: its choices and every extension's storage for it go too (installed
    /// or not).
    pub fn forget(&mut self, call: &mut Call, room: &str) {
        let (storage, txn) = call.store();
        txn.delete(Tier::Extensions, RoomRecord::key(room));
        txn.delete_prefix(
            storage,
            Tier::Extensions,
            &extension_tier::store_prefix(room),
        );
        self.instances.retain(|(_, r), _| r != room);
        self.said_at.retain(|(_, r), _| r != room);
    }
}

/// An extension's keys in one room: under the room first, so that the room's end takes them all.
fn store_prefix(extension: &str, room: &str) -> String {
    format!("{}{extension}/", extension_tier::store_prefix(room))
}

fn load(call: &mut Call, room: &str) -> RoomRecord {
    let (storage, txn) = call.store();
    txn.get(storage, Tier::Extensions, &RoomRecord::key(room))
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn save(txn: &mut Transaction, room: &str, record: &RoomRecord) {
    let bytes = serde_json::to_vec(record).expect("a room record serialises");
    txn.put_bookkeeping(Tier::Extensions, RoomRecord::key(room), bytes);
}

fn notify_owners(txn: &mut Transaction, room: &str, owners: &[String], text: &str) {
    for owner in owners {
        let notice = Element::builder("message", "jabber:client")
            .attr(xml_ncname!("from").into(), room)
            .attr(xml_ncname!("to").into(), owner.as_str())
            .attr(xml_ncname!("type").into(), "normal")
            .append(
                Element::builder("body", "jabber:client")
                    .append(text)
                    .build(),
            )
            .build();
        txn.outbound.push(notice.into());
    }
}
