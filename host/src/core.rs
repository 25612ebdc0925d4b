//! The core thread of `muc-host serve`: the one place stanzas are handled. It owns the
//! [`Service`] (router, plugin runtime, store), takes events from the connections in turn (one
//! from each connection with events waiting, round-robin: see [`crate::inbox`]), and commits in
//! groups: it handles every event waiting (up to a batch), runs due timers, makes the batch's
//! writes durable in one disk transaction, and only then lets the batch's stanzas leave, in
//! order. Under load a sync covers many stanzas; when idle, each stanza is its own batch.

use flume::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::FullJid;
use minidom::Element;

use crate::clock::{Clock, SystemClock};
use crate::extensions::Change;
use crate::inbox::Inbox;
use crate::metrics::Metrics;
use crate::router::SessionSink;
use crate::runtime::{CompiledPlugin, MucBackend, PluginRuntime, Prepared, Status, SwapReport};
use crate::service::Service;

/// At most this many events share one sync, so a flood cannot delay its first stanzas long.
const MAX_BATCH: usize = 512;
/// A batch also ends once it has this many stanzas to send, so one that answers a flood of
/// queries (pages of archived messages) delivers them, and the flooder's backlog shows, early.
const MAX_BATCH_STANZAS: usize = 4_096;
/// Events a client connection may have waiting for the core: past this, its reader waits to hand
/// the next one over, and so stops reading its socket: TCP pushes back on whoever floods, and
/// nobody else waits behind its backlog. Small, because a reader also stops handing events over
/// while its session has many stanzas waiting to be written (c2s): what the lane already holds,
/// each event answered with at most a page of archived messages, must stay far below the
/// session's bound.
pub const CLIENT_LANE: usize = 16;
/// The same for the component link, which carries every user of the server in front.
pub const LINK_LANE: usize = 4096;
/// The same for the operator's controls (the control socket, the host's ad-hoc answers).
pub const CONTROL_LANE: usize = 64;
/// Wake up at least this often, to notice timers set by other means.
const IDLE_WAKE: Duration = Duration::from_secs(1);

pub enum CoreEvent {
    /// A client bound `jid`; stanzas for it go to `sink`.
    Bind {
        jid: FullJid,
        /// Unique per connection: a later session may take over the same full JID.
        session: u64,
        sink: Box<dyn SessionSink>,
    },
    FromClient {
        from: FullJid,
        /// The connection it came on: a stanza still in flight from a session that another
        /// took over is not the newer session's.
        session: u64,
        stanza: Element,
    },
    /// The session ended, cleanly or not.
    Unbind { jid: FullJid, session: u64 },
    /// A stanza from the server at the other end of the component link.
    FromComponent(Element),
    /// A stanza the host sends itself (the answer to its ad-hoc command).
    FromHost(Element),
    /// Hot swap: hand the service to a prepared plugin between two stanzas (see
    /// [`PluginRuntime::swap`]); the answer goes back once the swap's writes are durable.
    Swap {
        prepared: Box<Prepared>,
        reply: Reply<Result<SwapReport, String>>,
    },
    /// An operator's change to the room extensions' catalog; the answer goes back once its
    /// writes are durable.
    Extensions {
        change: Box<Change>,
        reply: Reply<Result<String, String>>,
    },
    /// What `ctl status` shows.
    Status { reply: Reply<Status> },
    /// The plugin the current one replaced, for a rollback.
    Previous {
        reply: Reply<Option<CompiledPlugin>>,
    },
    /// Stop: the plugin says goodbye (status 332), the last batch is synced and delivered, every
    /// stream is closed.
    Shutdown,
}

pub type Reply<T> = tokio::sync::oneshot::Sender<T>;

/// Answers that wait for the batch's sync.
type Answers = Vec<Box<dyn FnOnce() + Send>>;

/// The operator's controls over the MUC logic, which the core carries out between two stanzas.
/// The component runtime has them all; the natively linked logic (measurement only) refuses
/// them.
pub trait Controls {
    /// Hands the service to `prepared` (see [`PluginRuntime::swap`]).
    fn swap(&mut self, prepared: Prepared, metrics: &Metrics) -> Result<SwapReport, String>;
    fn change_extensions(&mut self, change: Change) -> Result<String, String>;
    fn status(&self) -> Status;
    fn previous(&self) -> Option<CompiledPlugin>;
}

impl Controls for Service<PluginRuntime> {
    fn swap(&mut self, prepared: Prepared, metrics: &Metrics) -> Result<SwapReport, String> {
        swap(self, prepared, metrics)
    }

    fn change_extensions(&mut self, change: Change) -> Result<String, String> {
        Service::change_extensions(self, change)
    }

    fn status(&self) -> Status {
        self.muc.status()
    }

    fn previous(&self) -> Option<CompiledPlugin> {
        self.muc.previous()
    }
}

/// Runs until [`CoreEvent::Shutdown`] or until every sender is gone. A failed sync ends the
/// process: the disk no longer holds what was promised, and a restart recovers from it.
pub fn run<M: MucBackend>(mut service: Service<M>, mut events: Inbox, metrics: Arc<Metrics>)
where
    Service<M>: Controls,
{
    let clock = SystemClock;
    loop {
        let wait = next_wake(&service, &clock);
        let first = match events.recv_timeout(wait) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut stopping = false;
        let mut handled = 0;
        let mut answers: Answers = Vec::new();
        let mut next = first;
        while let Some(event) = next.take() {
            stopping |= handle(&mut service, event, &metrics, &mut answers);
            handled += 1;
            if stopping || handled >= MAX_BATCH || service.pending() >= MAX_BATCH_STANZAS {
                break;
            }
            next = events.try_recv();
        }
        service.run_due_timers();
        if stopping {
            service.shutdown();
        }
        commit(&mut service, &metrics);
        for answer in answers {
            answer();
        }
        metrics
            .connections
            .set(service.router.session_count() as i64);
        if stopping {
            service.router.close_all("system-shutdown");
            tracing::info!("core stopped");
            return;
        }
    }
}

fn handle<M: MucBackend>(
    service: &mut Service<M>,
    event: CoreEvent,
    metrics: &Metrics,
    answers: &mut Answers,
) -> bool
where
    Service<M>: Controls,
{
    match event {
        CoreEvent::Bind { jid, session, sink } => service.connect_session(jid, session, sink),
        CoreEvent::FromClient {
            from,
            session,
            stanza,
        } => {
            if service.router.is_session(&from, session) {
                service.from_client(&from, stanza)
            }
        }
        CoreEvent::Unbind { jid, session } => service.disconnect_session(&jid, session),
        CoreEvent::FromComponent(stanza) => service.from_component(stanza),
        CoreEvent::FromHost(stanza) => service.send_from_host(stanza),
        CoreEvent::Swap { prepared, reply } => {
            let outcome = service.swap(*prepared, metrics);
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
        CoreEvent::Status { reply } => {
            let _ = reply.send(service.status());
        }
        CoreEvent::Previous { reply } => {
            let _ = reply.send(service.previous());
        }
        CoreEvent::Shutdown => return true,
    }
    false
}

/// The swap itself, inside the pause: stanzas arriving meanwhile wait in the channel, in order,
/// for the new plugin.
fn swap(
    service: &mut Service<PluginRuntime>,
    prepared: Prepared,
    metrics: &Metrics,
) -> Result<SwapReport, String> {
    let started = Instant::now();
    let to = prepared.info().clone();
    let from = service.muc.info().clone();
    let outcome = service.swap(prepared);
    let pause = started.elapsed();
    metrics.swap_pause_seconds.observe(pause.as_secs_f64());
    match &outcome {
        Ok(report) => {
            tracing::info!(
                from = report.from.version,
                from_hash = report.from.hash,
                to = report.to.version,
                to_hash = report.to.hash,
                upgraded = report.upgraded,
                pause_us = pause.as_micros() as u64,
                outcome = "swapped",
                "plugin swap"
            );
        }
        Err(error) => {
            tracing::warn!(
                from = from.version,
                to = to.version,
                to_hash = to.hash,
                pause_us = pause.as_micros() as u64,
                outcome = "refused",
                reason = %error,
                "plugin swap"
            );
        }
    }
    outcome
        .map_err(|fault| format!("the new plugin's upgrade failed, the old one serves on: {fault}"))
}

fn commit<M: MucBackend>(service: &mut Service<M>, metrics: &Metrics) {
    let started = Instant::now();
    match service.flush() {
        Ok(0) => {}
        Ok(keys) => {
            metrics.storage_batch_keys.observe(keys as f64);
            metrics
                .storage_sync_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Err(error) => {
            tracing::error!(%error, "the store could not sync; stopping so a restart recovers from disk");
            std::process::exit(70);
        }
    }
}

/// How long the core may sleep: until the plugin's next timer, at most [`IDLE_WAKE`].
fn next_wake<M: MucBackend>(service: &Service<M>, clock: &dyn Clock) -> Duration {
    let next_timer = service
        .muc
        .storage()
        .lock()
        .expect("storage lock")
        .next_timer();
    match next_timer {
        Some(at) => Duration::from_millis(at.saturating_sub(clock.now_ms())).min(IDLE_WAKE),
        None => IDLE_WAKE,
    }
}
