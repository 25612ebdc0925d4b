//! Running one event through a room's extensions: each hook call in its sandbox, as a
//! savepoint of the MUC call, its messages collected and its faults contained.

use super::catalog::Entry;
use super::rooms::{Choice, RoomRecord};
use super::sandbox::{self, HookCall, JoinVerdict, MessageVerdict, RoomInfo};
use super::{load, notify_owners, save, store_prefix, Call, Extensions};
use crate::runtime::wit_extensions as wit;
use crate::runtime::EPOCH_TICK;

/// A hook call that went wrong, as the owners are told.
struct Fault(String);

impl Extensions {
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
    pub(super) fn next_tick(
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
                _ => format!("it crashed ({})", first_line(error)),
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
