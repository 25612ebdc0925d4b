//! Room extensions: third-party components a room owner switches on in one room, run by the host
//! under its limits (`wit/extension/room-extension.wit`).
//!
//! The MUC plugin calls in at each hook point (`muc:plugin/extensions`); this module finds the
//! room's enabled extensions, runs each hook in its sandbox as a savepoint of the plugin's call,
//! and turns what they did into one outcome. Faults are contained here: the extension's writes
//! and messages are undone, the owners are told, and after `faults_before_off` faults it is
//! switched off in that room. The plugin never sees a fault.

pub mod catalog;
mod compiler;
pub mod rooms;
mod sandbox;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minidom::rxml::xml_ncname;
use minidom::Element;

use crate::runtime::wit_extensions as wit;
use crate::runtime::EPOCH_TICK;
use crate::storage::{Storage, Tier, Transaction};
pub use catalog::Entry;
pub use compiler::{Compiled, ExtensionCompiler};
use rooms::{Choice, RoomRecord};
use sandbox::{HookCall, Instance, JoinVerdict, MessageVerdict, RoomInfo};

/// What the host allows each extension, in each room.
#[derive(Clone, Copy, Debug)]
pub struct ExtensionLimits {
    /// CPU time for one hook call (epoch interruption, to within one tick).
    pub call_budget: Duration,
    pub memory_bytes: usize,
    /// Bytes of keys and values in its storage, per room.
    pub quota_bytes: usize,
    /// Messages it may say in one room per minute.
    pub messages_per_minute: usize,
    /// Faults after which it is switched off in the room.
    pub faults_before_off: u32,
}

impl Default for ExtensionLimits {
    fn default() -> ExtensionLimits {
        ExtensionLimits {
            call_budget: Duration::from_millis(50),
            memory_bytes: 16 << 20,
            quota_bytes: 256 << 10,
            messages_per_minute: 20,
            faults_before_off: 3,
        }
    }
}

/// The MUC call a hook runs inside: the store, the call's transaction, its instant.
pub struct Call<'a> {
    pub storage: &'a Arc<Mutex<Storage>>,
    pub txn: &'a mut Transaction,
    pub now_ms: u64,
}

/// The installed extensions and their live instances, shared by the plugin runtime (hooks) and
/// the service (installing and removing).
pub type SharedExtensions = Arc<Mutex<Extensions>>;

pub struct Extensions {
    compiler: ExtensionCompiler,
    installed: BTreeMap<String, Compiled>,
    /// One instance per (extension, room), made on first use, dropped after a fault.
    instances: HashMap<(String, String), Instance>,
    /// When each (extension, room) said something in the last minute.
    said_at: HashMap<(String, String), VecDeque<u64>>,
    /// When each (extension, room) is next due a tick.
    tick_due: HashMap<(String, String), u64>,
    /// The tick each room's plugin timer was last asked for, so an unchanged one costs no write.
    tick_asked: HashMap<String, Option<u64>>,
}

/// An operator's change to the catalog (`muc-host ext add/remove`).
pub enum Change {
    /// Install, or replace the installed version; `rooms` limits where owners may switch it on.
    Install {
        compiled: Box<Compiled>,
        rooms: Option<Vec<String>>,
    },
    Remove(String),
}

/// A hook call that went wrong, as the owners are told.
struct Fault(String);

impl Extensions {
    pub fn new(compiler: ExtensionCompiler) -> Extensions {
        Extensions {
            compiler,
            installed: BTreeMap::new(),
            instances: HashMap::new(),
            said_at: HashMap::new(),
            tick_due: HashMap::new(),
            tick_asked: HashMap::new(),
        }
    }

    pub fn shared(self) -> SharedExtensions {
        Arc::new(Mutex::new(self))
    }

    pub fn compiler(&self) -> &ExtensionCompiler {
        &self.compiler
    }

    fn limits(&self) -> ExtensionLimits {
        self.compiler.limits()
    }

    /// Compiles every extension the store's catalog lists (at start). One that no longer compiles
    /// is logged and left out; its rooms keep their settings for when it is installed again.
    pub fn load(&mut self, storage: &Storage) {
        for (key, value) in storage.range(Tier::Extensions, "catalog/", None) {
            let loaded = serde_json::from_slice::<Entry>(value)
                .map_err(anyhow::Error::from)
                .and_then(|entry| {
                    let bytes = storage
                        .get(Tier::Extensions, &catalog::component_key(&entry.name))
                        .ok_or_else(|| anyhow::anyhow!("its component is missing"))?;
                    let mut compiled = self.compiler.compile(bytes)?;
                    compiled.entry.rooms = entry.rooms;
                    compiled.entry.on_by_default = entry.on_by_default;
                    Ok(compiled)
                });
            match loaded {
                Ok(compiled) => {
                    self.installed.insert(compiled.entry.name.clone(), compiled);
                }
                Err(error) => tracing::error!(key, "extension not loaded: {error:#}"),
            }
        }
    }

    /// The catalog as stored, without compiling anything.
    pub fn catalog(storage: &Storage) -> Vec<Entry> {
        storage
            .range(Tier::Extensions, "catalog/", None)
            .filter_map(|(_, value)| serde_json::from_slice(value).ok())
            .collect()
    }

    pub fn list(&self) -> Vec<Entry> {
        self.installed.values().map(|c| c.entry.clone()).collect()
    }

    /// Installs `compiled` (or replaces the installed version of the same name: its rooms keep
    /// their settings and storage, their next hook runs the new version). The catalog's writes go
    /// into `txn`.
    pub fn install(&mut self, compiled: Compiled, txn: &mut Transaction) -> anyhow::Result<()> {
        let name = compiled.entry.name.clone();
        txn.put(
            Tier::Extensions,
            catalog::catalog_key(&name),
            serde_json::to_vec(&compiled.entry)?,
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        txn.put(
            Tier::Extensions,
            catalog::component_key(&name),
            compiled.bytes.to_vec(),
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        self.instances
            .retain(|(extension, _), _| *extension != name);
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
                let allowed = match &entry.rooms {
                    None => "every room".to_string(),
                    Some(rooms) => rooms.join(", "),
                };
                Ok(match replaced {
                    Some(old) => format!(
                        "replaced {} {old} by {}: rooms that use it keep their settings and storage (allowed in {allowed})",
                        entry.name, entry.version
                    ),
                    None => format!("installed {} {} (allowed in {allowed})", entry.name, entry.version),
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
        let Some(removed) = self.installed.remove(name) else {
            anyhow::bail!("no extension named '{name}' is installed");
        };
        self.instances.retain(|(extension, _), _| extension != name);
        let records: Vec<(String, Vec<u8>)> = {
            let storage = call.storage.lock().expect("storage lock");
            call.txn
                .scan(&storage, Tier::Extensions, "room/", None, usize::MAX)
        };
        let mut rooms_using = 0;
        for (key, value) in records {
            let room = key["room/".len()..].to_string();
            let mut record: RoomRecord = serde_json::from_slice(&value)?;
            if !removed.entry.allowed_in(&room) || !record.choice(&removed.entry).enabled {
                continue;
            }
            rooms_using += 1;
            record.extensions.remove(name);
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
        Ok(rooms_using)
    }

    /// The extensions switched on in `room`, in name order, with the room's choices.
    fn enabled(&self, record: &RoomRecord, room: &str) -> Vec<(Entry, Choice)> {
        self.installed
            .values()
            .filter(|c| c.entry.allowed_in(room))
            .map(|c| (c.entry.clone(), record.choice(&c.entry)))
            .filter(|(_, choice)| choice.enabled)
            .collect()
    }

    pub fn active(&self, storage: &Arc<Mutex<Storage>>, txn: &Transaction, room: &str) -> bool {
        if self.installed.is_empty() {
            return false;
        }
        let record = load(storage, txn, room);
        !self.enabled(&record, room).is_empty()
    }

    pub fn form_fields(
        &self,
        storage: &Arc<Mutex<Storage>>,
        txn: &Transaction,
        room: &str,
    ) -> Vec<wit::FormField> {
        let record = load(storage, txn, room);
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
        let mut record = load(call.storage, call.txn, &room.jid);
        let before = record.clone();
        let occupant_nicks: Vec<&str> = room.occupants.iter().map(|o| o.nick.as_str()).collect();
        for compiled in self.installed.values() {
            let entry = &compiled.entry;
            if !entry.allowed_in(&room.jid) {
                continue;
            }
            let choice =
                rooms::apply_form(entry, record.choice(entry), &submitted, &occupant_nicks)?;
            record.extensions.insert(entry.name.clone(), choice);
        }
        let enabled = self.enabled(&record, &room.jid);
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
        let changed = record.extensions != before.extensions;
        if record != before {
            save(call.txn, &room.jid, &record);
        }
        Ok(wit::Configured {
            changed,
            next_tick: self.next_tick(&enabled, &room.jid, call.now_ms, false),
        })
    }

    /// The room is gone: its choices and every extension's storage for it go too.
    pub fn forget(&mut self, call: &mut Call, room: &str) {
        call.txn.delete(Tier::Extensions, RoomRecord::key(room));
        let storage = call.storage.clone();
        let storage = storage.lock().expect("storage lock");
        for name in self.installed.keys() {
            call.txn
                .delete_prefix(&storage, Tier::Extensions, &store_prefix(name, room));
        }
        self.instances.retain(|(_, r), _| r != room);
        self.said_at.retain(|(_, r), _| r != room);
        self.tick_due.retain(|(_, r), _| r != room);
        self.tick_asked.remove(room);
    }

    /// Runs one event through the room's enabled extensions.
    pub fn hook(&mut self, call: &mut Call, room: wit::Room, event: wit::Event) -> wit::Outcome {
        let mut record = load(call.storage, call.txn, &room.jid);
        let before = record.clone();
        record.owners = room.owners.clone();
        let enabled = self.enabled(&record, &room.jid);
        let mut outcome = wit::Outcome {
            verdict: wit::Verdict::Pass,
            said: Vec::new(),
            next_tick: wit::TickRequest::Keep,
        };
        let seen = room_info(&room);
        let ticked = matches!(event, wit::Event::Tick);
        match event {
            wit::Event::Message(message) => {
                let sender = occupant(&message.sender, room.non_anonymous);
                let mut body = message.body;
                let mut rewritten = false;
                for (entry, choice) in &enabled {
                    let result = self.run(
                        call,
                        &mut record,
                        entry,
                        choice,
                        &seen,
                        &mut outcome,
                        |ext, store| {
                            ext.muc_extension_hooks()
                                .call_on_message(store, &sender, &body)
                        },
                    );
                    match result {
                        Some(MessageVerdict::Pass) => {}
                        Some(MessageVerdict::Rewrite(new))
                            if new.len() <= sandbox::MAX_SAID_BYTES * 16 =>
                        {
                            body = new;
                            rewritten = true;
                        }
                        Some(MessageVerdict::Rewrite(new)) => {
                            self.fault(
                                call,
                                &mut record,
                                &room.jid,
                                entry,
                                format!("it rewrote a message into {} bytes", new.len()),
                            );
                            if choice.fail_closed {
                                outcome.verdict = refused_by(entry);
                                break;
                            }
                        }
                        Some(MessageVerdict::Reject(why)) => {
                            outcome.verdict = wit::Verdict::Refuse(why);
                            break;
                        }
                        None if choice.fail_closed => {
                            outcome.verdict = refused_by(entry);
                            break;
                        }
                        None => {}
                    }
                }
                if matches!(outcome.verdict, wit::Verdict::Pass) {
                    if rewritten {
                        outcome.verdict = wit::Verdict::Rewrite(body.clone());
                    }
                    for (entry, choice) in &enabled {
                        let Some(arguments) = command_arguments(entry, &body) else {
                            continue;
                        };
                        self.run(
                            call,
                            &mut record,
                            entry,
                            choice,
                            &seen,
                            &mut outcome,
                            |ext, store| {
                                ext.muc_extension_hooks()
                                    .call_on_command(store, &sender, &arguments)
                            },
                        );
                    }
                }
            }
            wit::Event::Join(joiner) => {
                let taken = enabled.iter().find(|(entry, choice)| {
                    entry.nick.is_some() && choice.nick.as_deref() == Some(joiner.nick.as_str())
                });
                if let Some((entry, _)) = taken {
                    outcome.verdict = wit::Verdict::Refuse(format!(
                        "The nickname '{}' belongs to the room's extension {}",
                        joiner.nick, entry.name
                    ));
                } else {
                    let joiner = occupant(&joiner, room.non_anonymous);
                    for (entry, choice) in &enabled {
                        let result = self.run(
                            call,
                            &mut record,
                            entry,
                            choice,
                            &seen,
                            &mut outcome,
                            |ext, store| ext.muc_extension_hooks().call_on_join(store, &joiner),
                        );
                        match result {
                            Some(JoinVerdict::Allow) => {}
                            Some(JoinVerdict::Refuse(why)) => {
                                outcome.verdict = wit::Verdict::Refuse(why);
                                break;
                            }
                            None if choice.fail_closed => {
                                outcome.verdict = refused_by(entry);
                                break;
                            }
                            None => {}
                        }
                    }
                }
            }
            wit::Event::Joined(who) => {
                let who = occupant(&who, room.non_anonymous);
                for (entry, choice) in &enabled {
                    self.run(
                        call,
                        &mut record,
                        entry,
                        choice,
                        &seen,
                        &mut outcome,
                        |ext, store| ext.muc_extension_hooks().call_on_joined(store, &who),
                    );
                }
            }
            wit::Event::Left(who) => {
                let who = occupant(&who, room.non_anonymous);
                for (entry, choice) in &enabled {
                    self.run(
                        call,
                        &mut record,
                        entry,
                        choice,
                        &seen,
                        &mut outcome,
                        |ext, store| ext.muc_extension_hooks().call_on_left(store, &who),
                    );
                }
            }
            wit::Event::Tick => {
                for (entry, choice) in &enabled {
                    let Some(seconds) = entry.tick_seconds else {
                        continue;
                    };
                    let key = (entry.name.clone(), room.jid.clone());
                    if self
                        .tick_due
                        .get(&key)
                        .is_some_and(|due| *due > call.now_ms)
                    {
                        continue;
                    }
                    self.tick_due
                        .insert(key, call.now_ms + u64::from(seconds) * 1000);
                    self.run(
                        call,
                        &mut record,
                        entry,
                        choice,
                        &seen,
                        &mut outcome,
                        |ext, store| ext.muc_extension_hooks().call_on_tick(store),
                    );
                }
            }
        }
        if record != before {
            save(call.txn, &room.jid, &record);
        }
        let still_enabled = self.enabled(&record, &room.jid);
        outcome.next_tick = self.next_tick(&still_enabled, &room.jid, call.now_ms, ticked);
        outcome
    }

    /// When the room's next tick is due, scheduling extensions that have none yet: `keep` when
    /// the plugin's timer already says so (a tick consumed the timer: then never `keep`).
    fn next_tick(
        &mut self,
        enabled: &[(Entry, Choice)],
        room: &str,
        now_ms: u64,
        timer_consumed: bool,
    ) -> wit::TickRequest {
        let due = enabled
            .iter()
            .filter_map(|(entry, _)| {
                let seconds = entry.tick_seconds?;
                let due = self
                    .tick_due
                    .entry((entry.name.clone(), room.to_string()))
                    .or_insert(now_ms + u64::from(seconds) * 1000);
                Some(*due)
            })
            .min();
        let asked = self.tick_asked.insert(room.to_string(), due);
        match due {
            _ if asked == Some(due) && !timer_consumed => wit::TickRequest::Keep,
            Some(at) => wit::TickRequest::At(at),
            None => wit::TickRequest::Stop,
        }
    }

    /// One hook call of `entry` in the room, as a savepoint of `call`. Its messages are added to
    /// `outcome`; a fault is handled here and gives `None`.
    #[allow(clippy::too_many_arguments)]
    fn run<T>(
        &mut self,
        call: &mut Call,
        record: &mut RoomRecord,
        entry: &Entry,
        choice: &Choice,
        room: &RoomInfo,
        outcome: &mut wit::Outcome,
        hook: impl FnOnce(
            &sandbox::RoomExtension,
            &mut wasmtime::Store<sandbox::ExtensionContext>,
        ) -> wasmtime::Result<T>,
    ) -> Option<T> {
        match self.run_sandboxed(call, entry, choice, room, hook) {
            Ok((value, said)) => {
                let nick = choice.nick.clone().unwrap_or_default();
                outcome.said.extend(said.into_iter().map(|body| wit::Said {
                    nick: nick.clone(),
                    body,
                }));
                Some(value)
            }
            Err(Fault(why)) => {
                self.fault(call, record, &room.jid, entry, why);
                None
            }
        }
    }

    fn run_sandboxed<T>(
        &mut self,
        call: &mut Call,
        entry: &Entry,
        choice: &Choice,
        room: &RoomInfo,
        hook: impl FnOnce(
            &sandbox::RoomExtension,
            &mut wasmtime::Store<sandbox::ExtensionContext>,
        ) -> wasmtime::Result<T>,
    ) -> Result<(T, Vec<String>), Fault> {
        let limits = self.limits();
        let key = (entry.name.clone(), room.jid.clone());
        let mut instance = match self.instances.remove(&key) {
            Some(instance) => instance,
            None => self.installed[&entry.name]
                .instantiate(limits.memory_bytes)
                .map_err(|error| Fault(format!("it could not be started: {error:#}")))?,
        };
        let window = self.said_at.entry(key.clone()).or_default();
        while window.front().is_some_and(|at| *at + 60_000 <= call.now_ms) {
            window.pop_front();
        }
        let savepoint = call.txn.writes.extensions.clone();
        let speaking_as = choice.nick.clone().filter(|_| entry.nick.is_some());
        instance.store.data_mut().memory.hit = false;
        instance.store.data_mut().call = Some(HookCall {
            storage: call.storage.clone(),
            txn: std::mem::take(call.txn),
            prefix: store_prefix(&entry.name, &room.jid),
            quota_bytes: limits.quota_bytes,
            used_bytes: None,
            room: room.clone(),
            settings: choice.all_settings(entry),
            nick: speaking_as.clone(),
            say_allowance: limits.messages_per_minute.saturating_sub(window.len()),
            said: Vec::new(),
            broke: None,
            now_ms: call.now_ms,
            tag: format!("{}@{}", entry.name, room.jid),
        });
        let ticks = limits.call_budget.as_millis() / EPOCH_TICK.as_millis();
        instance.store.set_epoch_deadline(ticks.max(1) as u64);
        let result = hook(&instance.bindings, &mut instance.store);
        let context = instance.store.data_mut();
        let done = context.call.take().expect("the hook call's state");
        *call.txn = done.txn;
        let fault = match &result {
            Err(_) if context.memory.hit => Some(format!(
                "it grew past its memory cap of {} MiB",
                limits.memory_bytes >> 20
            )),
            Err(error) => Some(match error.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => format!(
                    "it ran past its time budget of {} ms",
                    limits.call_budget.as_millis()
                ),
                _ => format!("it crashed ({})", first_line(&error)),
            }),
            Ok(_) => done
                .broke
                .clone()
                .map(|why| format!("it broke a rule: {why}")),
        };
        let impersonating = speaking_as
            .as_deref()
            .filter(|nick| !done.said.is_empty() && room.occupants.iter().any(|o| o.nick == *nick));
        let fault = fault.or(impersonating
            .map(|nick| format!("it tried to speak as '{nick}', which is an occupant's nickname")));
        if let Some(why) = fault {
            call.txn.writes.extensions = savepoint;
            return Err(Fault(why));
        }
        window.extend(std::iter::repeat_n(call.now_ms, done.said.len()));
        self.instances.insert(key, instance);
        Ok((result.expect("checked above"), done.said))
    }

    /// Counts a fault, tells the owners, and switches the extension off at the limit.
    fn fault(
        &mut self,
        call: &mut Call,
        record: &mut RoomRecord,
        room: &str,
        entry: &Entry,
        why: String,
    ) {
        let limit = self.limits().faults_before_off;
        let mut choice = record.choice(entry);
        choice.faults += 1;
        let switched_off = choice.faults >= limit;
        if switched_off {
            choice.enabled = false;
        }
        tracing::warn!(
            extension = entry.name,
            room,
            faults = choice.faults,
            switched_off,
            "room extension fault: {why}"
        );
        let mut notice = format!(
            "The room extension '{}' failed in {room}: {why} (fault {} of {limit}).",
            entry.name, choice.faults
        );
        if switched_off {
            notice.push_str(
                " It is now switched off in this room; an owner can switch it on again in the \
                 room's configuration.",
            );
        }
        record.extensions.insert(entry.name.clone(), choice);
        notify_owners(call.txn, room, &record.owners, &notice);
        self.instances
            .remove(&(entry.name.clone(), room.to_string()));
    }
}

fn refused_by(entry: &Entry) -> wit::Verdict {
    wit::Verdict::Refuse(format!(
        "The room's extension {} failed, and the room refuses what it cannot check",
        entry.name
    ))
}

/// The rest of `body` when it starts with the extension's command word.
fn command_arguments(entry: &Entry, body: &str) -> Option<String> {
    let command = entry.command.as_deref()?;
    let rest = body.trim_start().strip_prefix(command)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim().to_string())
}

fn first_line(error: &wasmtime::Error) -> String {
    let text = format!("{error}");
    text.lines().next().unwrap_or_default().to_string()
}

fn store_prefix(extension: &str, room: &str) -> String {
    format!("store/{extension}/{room}/")
}

fn load(storage: &Arc<Mutex<Storage>>, txn: &Transaction, room: &str) -> RoomRecord {
    let storage = storage.lock().expect("storage lock");
    txn.get(&storage, Tier::Extensions, &RoomRecord::key(room))
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn save(txn: &mut Transaction, room: &str, record: &RoomRecord) {
    let bytes = serde_json::to_vec(record).expect("a room record serialises");
    // A room record is small: the per-call quota cannot refuse it.
    let _ = txn.put(Tier::Extensions, RoomRecord::key(room), bytes);
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
        txn.outbound.push(notice);
    }
}

/// The room as an extension may see it: real JIDs only when the room shows them to everyone.
fn room_info(room: &wit::Room) -> RoomInfo {
    RoomInfo {
        jid: room.jid.clone(),
        name: room.name.clone(),
        subject: room.subject.clone(),
        non_anonymous: room.non_anonymous,
        occupants: room
            .occupants
            .iter()
            .map(|o| occupant(o, room.non_anonymous))
            .collect(),
    }
}

fn occupant(occupant: &wit::Occupant, non_anonymous: bool) -> sandbox::Occupant {
    sandbox::Occupant {
        nick: occupant.nick.clone(),
        role: match occupant.role {
            wit::Role::Moderator => sandbox::Role::Moderator,
            wit::Role::Participant => sandbox::Role::Participant,
            wit::Role::Visitor => sandbox::Role::Visitor,
        },
        affiliation: match occupant.affiliation {
            wit::Affiliation::Owner => sandbox::Affiliation::Owner,
            wit::Affiliation::Admin => sandbox::Affiliation::Admin,
            wit::Affiliation::Member => sandbox::Affiliation::Member,
            wit::Affiliation::None => sandbox::Affiliation::None,
        },
        jid: non_anonymous.then(|| occupant.jid.clone()),
    }
}
