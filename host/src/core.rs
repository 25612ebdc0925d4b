//! The core thread of `muc-host serve`: the one place stanzas are handled. It owns the
//! [`Service`] (router, plugin runtime, store), takes events from the connections in turn (one
//! from each connection with events waiting, round-robin: see [`crate::inbox`]), and commits in
//! groups: it handles every event waiting (up to a batch), runs due timers, makes the batch's
//! writes durable in one disk transaction, and only then lets the batch's stanzas leave, in
//! order. Under load a sync covers many stanzas; when idle, each stanza is its own batch.

use flume::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::core_event::CoreEvent;
use crate::inbox::Inbox;
use crate::metrics::Metrics;
use crate::runtime::MucBackend;
use crate::service::Service;
use crate::storage::lease::Fenced;

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

/// Runs until [`CoreEvent::Shutdown`] or until every sender is gone. A failed sync ends the
/// process: the disk no longer holds what was promised, and a restart recovers from it.
pub fn run<M: MucBackend>(mut service: Service<M>, mut events: Inbox, metrics: Arc<Metrics>) {
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
            stopping |= handle(&mut service, event, &mut answers);
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
    answers: &mut Answers,
) -> bool {
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
        CoreEvent::Shutdown => return true,
    }
    false
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
        // Another instance serves one of the batch's rooms now: the batch is rolled back and
        // those rooms forgotten here; the others are read again on their next stanza.
        Err(error) if error.is::<Fenced>() => {
            tracing::warn!("{error:#}");
            metrics.fencing_rejections.inc();
        }
        Err(error) if service.store_is_server() => {
            tracing::error!("{error:#}: nothing of the batch was sent; holding new stanzas until the database is back");
            wait_for_store(service, metrics);
        }
        Err(error) => {
            tracing::error!(%error, "the store could not sync; stopping so a restart recovers from disk");
            std::process::exit(70);
        }
    }
}

/// After a failed sync on a database server (restarting, unreachable): no event is taken
/// meanwhile, so new stanzas wait in the connections' lanes (and past them, in TCP), up to
/// [`STORE_WAIT`]; then the process stops, for its supervisor to start it again.
fn wait_for_store<M: MucBackend>(service: &mut Service<M>, metrics: &Metrics) {
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
        match service.flush() {
            Ok(_) => {
                tracing::info!(after = ?started.elapsed(), "the database is back; serving");
                return;
            }
            Err(error) if error.is::<Fenced>() => {
                tracing::warn!("{error:#}");
                metrics.fencing_rejections.inc();
                return;
            }
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

/// How long the core may sleep: until the plugin's next timer, at most [`IDLE_WAKE`].
fn next_wake<M: MucBackend>(service: &Service<M>, clock: &dyn Clock) -> Duration {
    match service.next_timer() {
        Some(at) => Duration::from_millis(at.saturating_sub(clock.now_ms())).min(IDLE_WAKE),
        None => IDLE_WAKE,
    }
}
