//! Running one event through a room's extensions: each hook call in its sandbox, as a
//! savepoint of the MUC call, its messages collected and its faults contained.

use std::sync::Arc;

use super::catalog::Entry;
use super::occupant_ids::OccupantIds;
use super::rooms::{Choice, RoomRecord};
use super::sandbox::{
    self, HookCall, JoinVerdict, MessageVerdict, Person, RoomInfo, SeenRoom, MAX_SAID_BYTES,
};
use super::text::unfit_for_xml;
use super::{load, notify_owners, save, store_prefix, Call, Extensions, MAX_REWRITE_BYTES};
use crate::lending::Place;
use crate::storage::Storage;
use crate::wasm::budget_ticks;
use crate::wasm::plugin_world::muc::plugin::extensions as wit;

/// A hook call that went wrong, as the owners are told.
struct Fault(String);

/// How one extension's hook call went.
enum Ran<T> {
    Done(T),
    /// It faulted now, or it is fail-closed and failed too often before: it cannot vouch.
    Faulted,
}

/// What the hook calls of one event share.
struct Turn<'t, 'c> {
    call: &'t mut Call<'c>,
    record: &'t mut RoomRecord,
    room: &'t Arc<SeenRoom>,
    outcome: &'t mut wit::Outcome,
}

type Store = wasmtime::Store<sandbox::ExtensionContext>;

impl Extensions {
    /// Runs one event through the room's enabled extensions.
    pub fn hook(
        &mut self,
        call: &mut Call,
        mut room: wit::Room,
        event: wit::Event,
    ) -> wit::Outcome {
        let mut record = load(call, &room.jid);
        let before = record.clone();
        let non_anonymous = room.non_anonymous;
        record.owners = std::mem::take(&mut room.owners);
        let ids = OccupantIds::of_room(call, &room.jid);
        // Made once for every extension the event reaches; most never ask for it.
        let seen = Arc::new(seen_room(room, ids));
        let room_jid = &seen.info.jid;
        let enabled = self.enabled(&record, room_jid);
        let mut outcome = wit::Outcome {
            verdict: wit::Verdict::Pass,
            said: Vec::new(),
            next_tick: wit::TickRequest::Keep,
        };
        let mut turn = Turn {
            call,
            record: &mut record,
            room: &seen,
            outcome: &mut outcome,
        };
        let visible = |who: wit::Occupant| person(who, non_anonymous);
        let mut ticked = false;
        match event {
            wit::Event::Message(message) => {
                self.on_message(&mut turn, &enabled, &visible(message.sender), message.body)
            }
            wit::Event::Join(joiner) => self.on_join(&mut turn, &enabled, &visible(joiner)),
            wit::Event::Joined(who) => {
                self.tell_each(&mut turn, &enabled, &visible(who), |e, s, who| {
                    e.muc_extension_hooks().call_on_joined(s, who)
                })
            }
            wit::Event::Left(who) => {
                self.tell_each(&mut turn, &enabled, &visible(who), |e, s, who| {
                    e.muc_extension_hooks().call_on_left(s, who)
                })
            }
            wit::Event::Tick => {
                ticked = true;
                self.on_tick(&mut turn, &enabled);
            }
        }
        // Those still taking part after the event (a fault may have switched one off).
        let ticking: Vec<(Entry, Choice)> = enabled
            .into_iter()
            .filter(|(entry, _)| entry.tick_seconds.is_some() && record.takes_part(entry))
            .collect();
        outcome.next_tick = next_tick(&mut record, &ticking, call.now_ms, ticked);
        if record != before {
            save(call.txn, room_jid, &record);
        }
        outcome
    }

    /// Each filter in turn (a rewrite is what the next sees; the first refusal ends it), then
    /// the commands the final body starts with.
    fn on_message(
        &mut self,
        turn: &mut Turn,
        enabled: &[(Entry, Choice)],
        sender: &Person,
        mut body: String,
    ) {
        let mut rewritten = false;
        for (entry, choice) in enabled {
            let sender = turn.room.shown_to(&entry.name, sender);
            let ran = self.run(turn, entry, |e, s: &mut Store| {
                e.muc_extension_hooks().call_on_message(s, &sender, &body)
            });
            match ran {
                Ran::Done(MessageVerdict::Pass) => {}
                Ran::Done(MessageVerdict::Rewrite(new)) => {
                    body = new;
                    rewritten = true;
                }
                Ran::Done(MessageVerdict::Reject(why)) => {
                    turn.outcome.verdict = wit::Verdict::Refuse(why);
                    return;
                }
                Ran::Faulted if choice.fail_closed => {
                    turn.outcome.verdict = refused_by(entry);
                    return;
                }
                Ran::Faulted => {}
            }
        }
        for (entry, _) in enabled {
            let Some(arguments) = command_arguments(entry, &body) else {
                continue;
            };
            let sender = turn.room.shown_to(&entry.name, sender);
            self.run(turn, entry, |e, s: &mut Store| {
                e.muc_extension_hooks()
                    .call_on_command(s, &sender, &arguments)
            });
        }
        if rewritten {
            turn.outcome.verdict = wit::Verdict::Rewrite(body);
        }
    }

    /// Nobody takes an extension's nick; then each extension may refuse.
    fn on_join(&mut self, turn: &mut Turn, enabled: &[(Entry, Choice)], joiner: &Person) {
        let nick = joiner.shown.nick.as_str();
        let taken = enabled
            .iter()
            .find(|(entry, choice)| entry.nick.is_some() && choice.nick.as_deref() == Some(nick));
        if let Some((entry, _)) = taken {
            turn.outcome.verdict = wit::Verdict::Refuse(format!(
                "The nickname '{nick}' belongs to the room's extension {}",
                entry.name
            ));
            return;
        }
        for (entry, choice) in enabled {
            let joiner = turn.room.shown_to(&entry.name, joiner);
            let ran = self.run(turn, entry, |e, s: &mut Store| {
                e.muc_extension_hooks().call_on_join(s, &joiner)
            });
            match ran {
                Ran::Done(JoinVerdict::Allow) => {}
                Ran::Done(JoinVerdict::Refuse(why)) => {
                    turn.outcome.verdict = wit::Verdict::Refuse(why);
                    return;
                }
                Ran::Faulted if choice.fail_closed => {
                    turn.outcome.verdict = refused_by(entry);
                    return;
                }
                Ran::Faulted => {}
            }
        }
    }

    /// An arrival or a departure: each extension is told; nothing to decide.
    fn tell_each(
        &mut self,
        turn: &mut Turn,
        enabled: &[(Entry, Choice)],
        who: &Person,
        hook: impl Fn(&sandbox::RoomExtension, &mut Store, &sandbox::Occupant) -> wasmtime::Result<()>,
    ) {
        for (entry, _) in enabled {
            let who = turn.room.shown_to(&entry.name, who);
            self.run(turn, entry, |e, s: &mut Store| hook(e, s, &who));
        }
    }

    /// The extensions whose tick is due get it, and their next one is scheduled.
    fn on_tick(&mut self, turn: &mut Turn, enabled: &[(Entry, Choice)]) {
        let now = turn.call.now_ms;
        for (entry, _) in enabled {
            let Some(seconds) = entry.tick_seconds else {
                continue;
            };
            if turn
                .record
                .ticks
                .get(&entry.name)
                .is_some_and(|due| *due > now)
            {
                continue;
            }
            turn.record
                .ticks
                .insert(entry.name.clone(), now + u64::from(seconds) * 1000);
            self.run(turn, entry, |e, s: &mut Store| {
                e.muc_extension_hooks().call_on_tick(s)
            });
        }
    }

    /// One hook call of `entry`, as a savepoint of the MUC call: its messages join the outcome,
    /// a fault is counted and reported here.
    fn run<T: Checked>(
        &mut self,
        turn: &mut Turn,
        entry: &Entry,
        hook: impl FnOnce(&sandbox::RoomExtension, &mut Store) -> wasmtime::Result<T>,
    ) -> Ran<T> {
        let choice = turn.record.choice(entry);
        if choice.failed {
            // Fail-closed and failed too often (fail-open ones are not run at all).
            return Ran::Faulted;
        }
        match self.run_sandboxed(turn.call, entry, &choice, turn.room, hook) {
            Ok((value, said)) => {
                let nick = choice.nick.unwrap_or_default();
                turn.outcome
                    .said
                    .extend(said.into_iter().map(|body| wit::Said {
                        nick: nick.clone(),
                        body,
                    }));
                Ran::Done(value)
            }
            Err(Fault(why)) => {
                self.fault(turn, entry, why);
                Ran::Faulted
            }
        }
    }

    fn run_sandboxed<T: Checked>(
        &mut self,
        call: &mut Call,
        entry: &Entry,
        choice: &Choice,
        room: &Arc<SeenRoom>,
        hook: impl FnOnce(&sandbox::RoomExtension, &mut Store) -> wasmtime::Result<T>,
    ) -> Result<(T, Vec<String>), Fault> {
        let operator = self.limits();
        let compiled = &self.installed[&entry.name];
        let limits = compiled.limits;
        let key = (entry.name.clone(), room.info.jid.clone());
        let mut instance = match self.instances.remove(&key) {
            Some((instance, _)) => instance,
            None => compiled
                .instantiate()
                .map_err(|error| Fault(format!("it could not be started: {error:#}")))?,
        };
        let window = self.said_at.entry(key.clone()).or_default();
        while window.front().is_some_and(|at| *at + 60_000 <= call.now_ms) {
            window.pop_front();
        }
        let savepoint = call.txn.savepoint();
        let speaking_as = choice.speaks_as(entry);
        instance.store.data_mut().memory.hit = false;
        instance.store.data().stderr.clear();
        instance.store.data().clock.set(call.now_ms);
        instance.store.data_mut().call = Some(HookCall {
            txn: std::mem::take(call.txn),
            prefix: store_prefix(&entry.name, &room.info.jid),
            extension: entry.name.clone(),
            quota_bytes: operator.quota_bytes,
            used_bytes: None,
            room: Arc::clone(room),
            reads_occupants: entry.reads_occupants,
            settings: choice.all_settings(entry),
            nick: speaking_as.clone(),
            say_allowance: operator.messages_per_minute.saturating_sub(window.len()),
            said: Vec::new(),
            logged: 0,
            written_bytes: 0,
            broke: None,
            refused: None,
            now_ms: call.now_ms,
            tag: format!("{}@{}", entry.name, room.info.jid),
        });
        instance
            .store
            .set_epoch_deadline(budget_ticks(limits.call_budget));
        let bindings = &instance.bindings;
        let result = call.storage.lend(&mut instance.store, lent_store, |store| {
            hook(bindings, store)
        });
        let context = instance.store.data_mut();
        let done = context.call.take().expect("the hook call's state");
        *call.txn = done.txn;
        let fault = match (&result, &done.broke) {
            (Err(_), _) if context.memory.hit => Some(format!(
                "it grew past its memory cap of {} MiB",
                limits.memory_bytes >> 20
            )),
            (_, Some(why)) => Some(format!("it broke a rule: {why}")),
            (Err(error), None) => Some(match error.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => format!(
                    "it ran past its time budget of {} ms",
                    limits.call_budget.as_millis()
                ),
                // What its runtime wrote last says why (an exception, a panic); a refused
                // import it did not handle is the likely cause of a trap without it.
                _ => match (context.stderr.last_line(), &done.refused) {
                    (Some(said), None) => format!("it crashed ({}): {said}", first_line(error)),
                    (Some(said), Some(refused)) => format!(
                        "it crashed ({}): {said} (after a refusal: {refused})",
                        first_line(error)
                    ),
                    (None, Some(refused)) => format!("it did not handle a refusal: {refused}"),
                    (None, None) => format!("it crashed ({})", first_line(error)),
                },
            }),
            (Ok(value), None) => value.rule_broken(),
        };
        let impersonating = speaking_as.as_deref().filter(|nick| {
            !done.said.is_empty() && room.occupants.iter().any(|o| o.shown.nick == *nick)
        });
        let fault = fault.or(impersonating
            .map(|nick| format!("it tried to speak as '{nick}', which is an occupant's nickname")));
        if let Some(why) = fault {
            call.txn.roll_back(savepoint);
            return Err(Fault(why));
        }
        window.extend(std::iter::repeat_n(call.now_ms, done.said.len()));
        self.keep(key, instance, limits.instances);
        Ok((result.expect("checked above"), done.said))
    }

    /// Keeps an instance for the next call, dropping the least recently used of its extension
    /// past that extension's cap (`own_cap`), and the least recently used of all past theirs.
    fn keep(&mut self, key: (String, String), instance: sandbox::Instance, own_cap: usize) {
        self.calls += 1;
        let own = self
            .instances
            .keys()
            .filter(|(extension, _)| *extension == key.0)
            .count();
        if own >= own_cap {
            self.drop_least_recently_used(|extension| extension == key.0);
        }
        if self.instances.len() >= super::MAX_INSTANCES {
            self.drop_least_recently_used(|_| true);
        }
        self.instances.insert(key, (instance, self.calls));
    }

    /// Drops the least recently used instance of the extensions `among` chooses.
    fn drop_least_recently_used(&mut self, among: impl Fn(&str) -> bool) {
        let oldest = self
            .instances
            .iter()
            .filter(|((extension, _), _)| among(extension))
            .min_by_key(|(_, (_, used))| *used)
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            self.instances.remove(&oldest);
        }
    }

    /// Counts a fault and tells the owners. At the limit a fail-open extension stops running
    /// in the room; a fail-closed one stops too, and the room refuses what it would have checked,
    /// until an owner switches it off or on again.
    fn fault(&mut self, turn: &mut Turn, entry: &Entry, why: String) {
        let limit = self.limits().faults_before_off;
        let room = &turn.room.info.jid;
        let mut choice = turn.record.choice(entry);
        choice.faults += 1;
        choice.failed = choice.faults >= limit;
        tracing::warn!(
            extension = entry.name,
            room,
            faults = choice.faults,
            failed = choice.failed,
            "room extension fault: {why}"
        );
        let mut notice = format!(
            "The room extension '{}' failed in {room}: {why} (fault {} of {limit}).",
            entry.name, choice.faults
        );
        if choice.failed && choice.fail_closed {
            notice.push_str(
                " It is fail-closed: the room now refuses the messages and joins it would have                  checked, until an owner switches it off, or on again, in the room's                  configuration.",
            );
        } else if choice.failed {
            notice.push_str(
                " It is now switched off in this room; an owner can switch it on again in the                  room's configuration.",
            );
        }
        turn.record.extensions.insert(entry.name.clone(), choice);
        notify_owners(turn.call.txn, room, &turn.record.owners, &notice);
        self.instances.remove(&(entry.name.clone(), room.clone()));
    }
}

/// Where an extension's instance holds the store lent to its hook call.
fn lent_store(store: &mut Store) -> &mut Place<Storage> {
    &mut store.data_mut().storage
}

/// A hook's answer the host must still check: a rule it breaks is a fault, inside the savepoint.
trait Checked {
    fn rule_broken(&self) -> Option<String> {
        None
    }
}

impl Checked for () {}

impl Checked for JoinVerdict {
    fn rule_broken(&self) -> Option<String> {
        match self {
            JoinVerdict::Refuse(why) => refusal_broken(why),
            JoinVerdict::Allow => None,
        }
    }
}

impl Checked for MessageVerdict {
    fn rule_broken(&self) -> Option<String> {
        match self {
            MessageVerdict::Rewrite(body) if body.len() > MAX_REWRITE_BYTES => {
                Some(format!("it rewrote a message into {} bytes", body.len()))
            }
            MessageVerdict::Rewrite(body) => {
                unfit_for_xml(body).map(|what| format!("it rewrote a message into {what}"))
            }
            MessageVerdict::Reject(why) => refusal_broken(why),
            MessageVerdict::Pass => None,
        }
    }
}

/// A refusal's text goes to the refused person in a stanza error.
fn refusal_broken(why: &str) -> Option<String> {
    if why.len() > MAX_SAID_BYTES {
        return Some(format!(
            "it refused with a text of {} bytes, over {MAX_SAID_BYTES}",
            why.len()
        ));
    }
    unfit_for_xml(why).map(|what| format!("it refused with {what}"))
}

/// When the room's next tick is due, scheduling ticking extensions that have none yet: `keep`
/// when the plugin's timer already says so, unless `timer_consumed` (a tick fired it, or the
/// owner just configured the room: the timer is written again).
pub(super) fn next_tick(
    record: &mut RoomRecord,
    ticking: &[(Entry, Choice)],
    now_ms: u64,
    timer_consumed: bool,
) -> wit::TickRequest {
    record
        .ticks
        .retain(|name, _| ticking.iter().any(|(entry, _)| entry.name == *name));
    let due = ticking
        .iter()
        .filter_map(|(entry, _)| {
            let seconds = u64::from(entry.tick_seconds?);
            Some(
                *record
                    .ticks
                    .entry(entry.name.clone())
                    .or_insert(now_ms + seconds * 1000),
            )
        })
        .min();
    let unchanged = record.tick_asked == due;
    record.tick_asked = due;
    match due {
        _ if unchanged && !timer_consumed => wit::TickRequest::Keep,
        Some(at) => wit::TickRequest::At(at),
        None => wit::TickRequest::Stop,
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

/// What ended the call, without the backtrace: the innermost cause, first line.
fn first_line(error: &wasmtime::Error) -> String {
    let text = error.root_cause().to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// The room as an extension may see it: real JIDs only when the room shows them to everyone.
fn seen_room(room: wit::Room, ids: OccupantIds) -> SeenRoom {
    let non_anonymous = room.non_anonymous;
    SeenRoom {
        info: RoomInfo {
            jid: room.jid,
            name: room.name,
            subject: room.subject,
            non_anonymous,
        },
        occupants: room
            .occupants
            .into_iter()
            .map(|o| person(o, non_anonymous))
            .collect(),
        ids,
    }
}

fn person(occupant: wit::Occupant, non_anonymous: bool) -> Person {
    let shown = sandbox::Occupant {
        id: String::new(),
        nick: occupant.nick,
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
    };
    Person {
        shown,
        real_jid: occupant.jid,
    }
}
