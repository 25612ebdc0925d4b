//! The core thread of `muc-host serve`: the one place stanzas are handled. It owns the
//! [`Service`] (router, plugin runtime, store), takes events from the connections in turn (one
//! from each connection with events waiting, round-robin: see [`crate::inbox`]), and commits in
//! groups: it handles every event waiting (up to a batch), runs due timers, makes the batch's
//! writes durable in one disk transaction, and only then lets the batch's stanzas leave, in
//! order. Under load a sync covers many stanzas; when idle, each stanza is its own batch.
//!
//! On a database server, a batch the database refused is handled again once it is back: its
//! stanzas are kept until its commit, and the store puts back what the batch changed (see
//! [`Kept`]).

use flume::RecvTimeoutError;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xmpp_parsers::stream_error::DefinedCondition;

use crate::clock::{Clock, SystemClock};
use crate::core_event::CoreEvent;
use crate::inbox::Inbox;
use crate::metrics::Metrics;
use crate::runtime::MucBackend;
use crate::service::Service;
use crate::storage::lease::{Fenced, Superseded};
use crate::storage::CommitOutcomeUnknown;

/// At most this many events share one sync, so a flood cannot delay its first stanzas long.
const MAX_BATCH: usize = 512;
/// A batch also ends once it has this many stanzas to send, so one that answers a flood of
/// queries (pages of archived messages) delivers them, and the flooder's backlog shows, early.
const MAX_BATCH_STANZAS: usize = 4_096;
/// How long stanzas are held for a database server that is away before the process gives up.
const STORE_WAIT: Duration = Duration::from_secs(60);
/// Wake up at least this often, to notice timers set by other means.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Answers that wait for the batch's sync.
type Answers = Vec<Box<dyn FnOnce() + Send>>;

/// A stanza of a batch, kept until its commit: on a database server, whose failures pass, the
/// stanzas of a batch it refused are handled again, in their order, before any new event.
#[derive(Clone)]
enum Kept {
    /// From a client session, as the session sent it (the session may be gone by the time it
    /// is handled again: it was accepted when it came).
    FromClient {
        from: FullJid,
        stanza: Element,
    },
    FromComponent(Element),
    FromHost(Element),
    /// A presence a session's start or end sent the rooms (the router, which the failure did
    /// not undo, has the session bound or gone already).
    Presence {
        from: FullJid,
        presence: Element,
    },
}

impl Kept {
    /// Of an event the core is about to handle, the stanza that reaches the service.
    fn of<M: MucBackend>(service: &Service<M>, event: &CoreEvent) -> Option<Kept> {
        Some(match event {
            CoreEvent::FromClient {
                from,
                session,
                stanza,
            } if service.router.is_session(from, *session) => Kept::FromClient {
                from: from.clone(),
                stanza: stanza.clone(),
            },
            CoreEvent::FromComponent(stanza) => Kept::FromComponent(stanza.clone()),
            CoreEvent::FromHost(stanza) => Kept::FromHost(stanza.clone()),
            _ => return None,
        })
    }

    fn handle<M: MucBackend>(self, service: &mut Service<M>) {
        match self {
            Kept::FromClient { from, stanza } => service.from_client(&from, stanza),
            Kept::FromComponent(stanza) => service.from_component(stanza),
            Kept::FromHost(stanza) => service.send_from_host(stanza),
            Kept::Presence { from, presence } => service.presence_again(&from, presence),
        }
    }

    /// The room (or other address) the stanza is for.
    fn to(&self) -> Option<BareJid> {
        let (Kept::FromClient { stanza, .. }
        | Kept::FromComponent(stanza)
        | Kept::FromHost(stanza)
        | Kept::Presence {
            presence: stanza, ..
        }) = self;
        stanza
            .attr("to")
            .and_then(|to| Jid::new(to).ok())
            .map(|to| to.to_bare())
    }
}

/// The next thing a batch handles: a kept stanza to handle again, or a new event.
enum Next {
    Again(Kept),
    Event(CoreEvent),
}

/// Which of a failed batch's stanzas are handled again.
enum HandleAgain {
    All,
    /// All but those for the rooms another instance took.
    AllBut(Vec<String>),
    /// None: the database may hold the batch (its COMMIT got no answer).
    Nothing,
}

/// Runs until [`CoreEvent::Shutdown`] or until every sender is gone. A failed sync ends the
/// process unless the store is a database server (see [`commit`]): the disk no longer holds
/// what was promised, and a restart recovers from it.
pub fn run<M: MucBackend>(mut service: Service<M>, mut events: Inbox, metrics: Arc<Metrics>) {
    let clock = SystemClock;
    let keeps_batches = service.store_is_server();
    let mut again: VecDeque<Kept> = VecDeque::new();
    loop {
        let first = match again.pop_front() {
            Some(kept) => Some(Next::Again(kept)),
            None => match events.recv_timeout(next_wake(&service, &clock)) {
                Ok(event) => Some(Next::Event(event)),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        let mut stopping = false;
        let mut handled = 0;
        let mut answers: Answers = Vec::new();
        let mut kept: Vec<Kept> = Vec::new();
        let mut next = first;
        while let Some(item) = next.take() {
            match item {
                Next::Event(event) => {
                    if keeps_batches {
                        kept.extend(Kept::of(&service, &event));
                    }
                    let (stop, presences) = handle(&mut service, event, &mut answers);
                    if keeps_batches {
                        kept.extend(presences);
                    }
                    stopping |= stop;
                }
                Next::Again(stanza) => {
                    kept.push(stanza.clone());
                    stanza.handle(&mut service);
                }
            }
            handled += 1;
            if stopping || handled >= MAX_BATCH || service.pending() >= MAX_BATCH_STANZAS {
                break;
            }
            next = match again.pop_front() {
                Some(kept) => Some(Next::Again(kept)),
                None => events.try_recv().map(Next::Event),
            };
        }
        service.run_due_timers();
        if stopping {
            service.shutdown();
        }
        let committed = match commit(&mut service, &metrics) {
            Ok(()) => true,
            Err(handle_again) => {
                let kept = kept.into_iter().filter(|item| match &handle_again {
                    HandleAgain::All => true,
                    HandleAgain::AllBut(rooms) => item
                        .to()
                        .is_none_or(|to| !rooms.iter().any(|room| room == to.as_str())),
                    HandleAgain::Nothing => false,
                });
                for item in kept.collect::<Vec<_>>().into_iter().rev() {
                    again.push_front(item);
                }
                false
            }
        };
        // Only a swap or an extension change waits for an answer: its effect in memory (the
        // plugin, the loaded extensions) cannot be undone here when its writes were refused.
        if !committed && !answers.is_empty() {
            tracing::error!("a swap or an extension change was in a batch the store refused; stopping so a restart serves what the store holds");
            std::process::exit(70);
        }
        for answer in answers {
            answer();
        }
        metrics
            .connections
            .set(service.router.session_count() as i64);
        if stopping {
            service.router.close_all(DefinedCondition::SystemShutdown);
            tracing::info!("core stopped");
            return;
        }
    }
}

/// Handles one event: whether it stops the service, and the presences a session's start or end
/// sent the rooms.
fn handle<M: MucBackend>(
    service: &mut Service<M>,
    event: CoreEvent,
    answers: &mut Answers,
) -> (bool, Vec<Kept>) {
    let to_rooms = |from: &FullJid, presences: Vec<Element>| {
        presences
            .into_iter()
            .map(|presence| Kept::Presence {
                from: from.clone(),
                presence,
            })
            .collect()
    };
    match event {
        CoreEvent::Bind { jid, session, sink } => {
            let presences = service.connect_session(jid.clone(), session, sink);
            return (false, to_rooms(&jid, presences));
        }
        CoreEvent::FromClient {
            from,
            session,
            stanza,
        } => {
            if service.router.is_session(&from, session) {
                service.from_client(&from, stanza)
            }
        }
        CoreEvent::Unbind { jid, session } => {
            let presences = service.disconnect_session(&jid, session);
            return (false, to_rooms(&jid, presences));
        }
        CoreEvent::FromComponent(stanza) => service.from_component(stanza),
        CoreEvent::FromHost(stanza) => service.send_from_host(stanza),
        CoreEvent::Swap { prepared, reply } => {
            let outcome = service.swap(*prepared);
            answers.push(Box::new(move || {
                let _ = reply.send(outcome);
            }));
        }
        CoreEvent::Extensions { change, reply } => {
            let outcome = service.change_extensions(*change);
            answers.push(Box::new(move || {
                let _ = reply.send(outcome);
            }));
        }
        CoreEvent::ExtensionList { reply } => {
            let _ = reply.send(service.extension_list());
        }
        CoreEvent::Status { reply } => {
            let _ = reply.send(service.status());
        }
        CoreEvent::Previous { reply } => {
            let _ = reply.send(service.muc.previous());
        }
        CoreEvent::Gauges { reply } => {
            let _ = reply.send(service.gauges());
        }
        CoreEvent::AskMuc { iq, reply } => {
            let _ = reply.send(service.ask_muc(iq));
        }
        CoreEvent::Shutdown => return (true, Vec::new()),
    }
    (false, Vec::new())
}

/// Makes the batch durable and delivers its stanzas; when it fails on a database server, says
/// which of its stanzas to handle again once the database is back.
fn commit<M: MucBackend>(service: &mut Service<M>, metrics: &Metrics) -> Result<(), HandleAgain> {
    let started = Instant::now();
    match service.flush() {
        Ok(0) => Ok(()),
        Ok(keys) => {
            metrics.storage_batch_keys.observe(keys as f64);
            metrics
                .storage_sync_seconds
                .observe(started.elapsed().as_secs_f64());
            Ok(())
        }
        Err(error) if error.is::<Superseded>() => superseded(&error),
        // Another instance serves one of the batch's rooms now: the batch is rolled back and
        // those rooms forgotten here; the others' stanzas are handled again.
        Err(error) if error.is::<Fenced>() => {
            tracing::warn!("{error:#}");
            metrics.fencing_rejections.inc();
            let fenced = error.downcast::<Fenced>().expect("a fencing rejection");
            Err(HandleAgain::AllBut(fenced.rooms))
        }
        Err(error) if service.store_is_server() => {
            let outcome_unknown = error.is::<CommitOutcomeUnknown>();
            if outcome_unknown {
                tracing::error!("{error:#}: nothing of the batch was sent, and since the database may hold it, it is not handled again; holding new stanzas until the database is back");
            } else {
                tracing::error!("{error:#}: nothing of the batch was sent; holding its stanzas and new ones until the database is back");
            }
            let taken = wait_for_store(service, metrics);
            Err(match (outcome_unknown, taken.is_empty()) {
                (true, _) => HandleAgain::Nothing,
                (false, true) => HandleAgain::All,
                (false, false) => HandleAgain::AllBut(taken),
            })
        }
        Err(error) => {
            tracing::error!(%error, "the store could not sync; stopping so a restart recovers from disk");
            std::process::exit(70);
        }
    }
}

/// After a failed sync on a database server (restarting, unreachable): no event is taken
/// meanwhile, so new stanzas wait in the connections' lanes (and past them, in TCP), up to
/// [`STORE_WAIT`]; then the process stops, for its supervisor to start it again. Returns the
/// rooms another instance took meanwhile.
fn wait_for_store<M: MucBackend>(service: &mut Service<M>, metrics: &Metrics) -> Vec<String> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
        match service.flush() {
            Ok(_) => {
                tracing::info!(after = ?started.elapsed(), "the database is back; serving");
                return Vec::new();
            }
            Err(error) if error.is::<Fenced>() => {
                tracing::warn!("{error:#}");
                metrics.fencing_rejections.inc();
                return error
                    .downcast::<Fenced>()
                    .expect("a fencing rejection")
                    .rooms;
            }
            Err(error) if error.is::<Superseded>() => superseded(&error),
            Err(error) if started.elapsed() < STORE_WAIT => {
                tracing::debug!("{error:#}: still waiting for the database");
            }
            Err(error) => {
                tracing::error!(
                    "{error:#}: the database is still away after {STORE_WAIT:?}; stopping"
                );
                std::process::exit(70);
            }
        }
    }
}

/// Another process took this instance's name (an old process woke up after its replacement
/// started): it serves nothing more, and exits with a code of its own (75) so that it is told
/// apart from a failure.
fn superseded(error: &anyhow::Error) -> ! {
    tracing::error!("{error:#}");
    std::process::exit(75);
}

/// How long the core may sleep: until the plugin's next timer, at most [`IDLE_WAKE`]. Timers
/// wait while the data is another plugin version's (they could not commit).
fn next_wake<M: MucBackend>(service: &Service<M>, clock: &dyn Clock) -> Duration {
    if service.data_upgraded_to.is_some() {
        return IDLE_WAKE;
    }
    match service.next_timer() {
        Some(at) => Duration::from_millis(at.saturating_sub(clock.now_ms())).min(IDLE_WAKE),
        None => IDLE_WAKE,
    }
}
