//! A bound client session, on any transport: its stanzas go to the core thread (checked: only
//! stanzas, only from itself); the core's deliveries come back through the session's queue
//! (`delivery.rs`) to a writer task, which writes whatever is queued in one flush. The backlog
//! between the two bounds what a slow reader can make the server hold.
//!
//! With stream management (`stream_management.rs`) the session counts what it handled and
//! keeps what it sent until acknowledged; when resumption was enabled, a dropped connection
//! (no `</stream>`, no `<close/>`) parks the session (`detached.rs`) instead of ending it, and a
//! stream that resumes it (`resumption.rs`) carries on where it stopped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use jid::FullJid;
use minidom::Element;
use tokio::sync::mpsc;
use xmpp_parsers::sm::Nonza;
use xmpp_parsers::stanza_error::DefinedCondition;
use xmpp_parsers::stream_error::DefinedCondition as StreamCondition;

use super::c2s::{C2s, CLIENT_NS, MAX_QUEUED_STANZAS, PAUSE_READING_AT, WRITE_TIMEOUT};
use super::delivery::{Backlog, ClientSink, Managed, Outgoing, Parked};
use super::detached;
use super::resumption::Claim;
use super::stream::StreamEvent;
use super::stream_management::{self as sm, Counters, SM_NS};
use super::transport::{ClientTransport, EventSource, StreamSink};
use super::wire::{stream_error, ReadError};
use crate::core_event::CoreEvent;
use crate::inbox::{Lane, CLIENT_LANE};

/// How a session begins on a connection.
pub enum Start {
    /// A resource was just bound.
    Bound(FullJid),
    /// An earlier session was resumed (`<resumed/>` is sent): its unacknowledged stanzas go first.
    Resumed(Parked),
}

/// A session on its connection; its queue's receiving end is with the writer task.
struct Live {
    jid: FullJid,
    session: u64,
    core: Lane,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    backlog: Arc<Backlog>,
    managed: Option<Managed>,
    /// Where streams that resume this session ask for it, when it is resumable.
    claims: Option<mpsc::UnboundedReceiver<Claim>>,
}

/// How the reading side ended.
enum Ending {
    /// For good: the client closed its stream, or we ended it with a stream error.
    Closed(String),
    /// The connection dropped without a close: a resumable session waits to be resumed.
    Dropped(String),
    /// Another stream resumed the session.
    TakenOver(Claim),
}

pub async fn run<T: ClientTransport>(c2s: Arc<C2s>, conn: T, start: Start, peer: SocketAddr) {
    let (mut reader, writer) = conn.split();
    let (mut live, queued) = match start {
        Start::Bound(jid) => bind(&c2s, jid).await,
        Start::Resumed(parked) => resume(&c2s, parked),
    };
    let resend = live
        .managed
        .as_ref()
        .map(|managed| managed.counters.clone());
    let (stop, stopped) = mpsc::unbounded_channel();
    let mut writer_task = tokio::spawn(write_loop(
        writer,
        queued,
        live.backlog.clone(),
        resend,
        stopped,
        c2s.writers.clone(),
    ));
    // The writer's end, when it ended on its own.
    let mut written = None;
    let ending = loop {
        let event = tokio::select! {
            event = async {
                live.backlog.below(PAUSE_READING_AT).await;
                reader.next().await
            } => event,
            ended = &mut writer_task => {
                let broken = ended.as_ref().map_or(true, |ended| ended.broken);
                written = Some(ended);
                let reason = if broken { "connection failed" } else { "closed by the server" };
                break if broken { Ending::Dropped(reason.into()) } else { Ending::Closed(reason.into()) };
            }
            Some(claim) = async { live.claims.as_mut()?.recv().await }, if live.claims.is_some() => {
                let acknowledged = live.counters().acknowledge(claim.h);
                match acknowledged {
                    Ok(()) => break Ending::TakenOver(claim),
                    Err(too_high) => {
                        let _ = claim.answer.send(Err(too_high));
                        continue;
                    }
                }
            }
        };
        match event {
            Ok(StreamEvent::Element(element)) if element.ns() == SM_NS => {
                if let Err(ending) = live.manage(&c2s, element) {
                    break ending;
                }
            }
            Ok(StreamEvent::Element(stanza)) => match checked(stanza) {
                Ok(stanza) => {
                    c2s.metrics.stanza_in(stanza.name());
                    if live.managed.is_some() {
                        live.counters().handled_one();
                    }
                    let _ = live
                        .core
                        .send(CoreEvent::FromClient {
                            from: live.jid.clone(),
                            session: live.session,
                            stanza,
                        })
                        .await;
                }
                Err(text) => {
                    break live.refuse(StreamCondition::UnsupportedStanzaType, text);
                }
            },
            Ok(StreamEvent::Close) => {
                let _ = live.outgoing.send(Outgoing::End);
                break Ending::Closed("closed by the client".to_string());
            }
            Ok(StreamEvent::Open(_)) => unreachable!("one header per stream"),
            Err(ReadError::Stream(error)) => break live.refuse(error.condition(), error.text()),
            Err(error) => break Ending::Dropped(error.to_string()),
        }
    };
    let resumable = live.managed.as_ref().is_some_and(|m| m.id.is_some());
    match ending {
        Ending::Dropped(reason) if resumable => {
            let _ = stop.send(Stop::Detach);
            let written = match written {
                Some(written) => written,
                None => writer_task.await,
            };
            let Some(parked) = live.park(written).await else {
                return;
            };
            tracing::info!(%peer, jid = %parked.jid, reason, "connection lost; the session waits to be resumed");
            let claims = live.claims.take().expect("a resumable session");
            tokio::spawn(detached::wait(c2s, parked, claims));
        }
        Ending::TakenOver(claim) => {
            let _ = stop.send(Stop::Conflict);
            let jid = live.jid.clone();
            let Some(parked) = live.park(writer_task.await).await else {
                return;
            };
            tracing::info!(%peer, %jid, "session resumed on another stream");
            if let Err(Ok(parked)) = claim.answer.send(Ok(parked)) {
                // The resuming stream is gone meanwhile: the session waits for another.
                let claims = live.claims.take().expect("a resumable session");
                tokio::spawn(detached::wait(c2s, parked, claims));
            }
        }
        Ending::Closed(reason) | Ending::Dropped(reason) => {
            if let Some(id) = live.managed.as_ref().and_then(|m| m.id.as_ref()) {
                c2s.resumption.remove(id);
            }
            // The rooms it was in hear it leave (RFC 6121 directed presence), clean exit or not.
            let _ = live
                .core
                .send(CoreEvent::Unbind {
                    jid: live.jid.clone(),
                    session: live.session,
                })
                .await;
            tracing::info!(%peer, jid = %live.jid, reason, "session ended");
        }
    }
}

/// A new session: bound in the core, its queue empty.
async fn bind(c2s: &C2s, jid: FullJid) -> (Live, mpsc::UnboundedReceiver<Outgoing>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SESSIONS: AtomicU64 = AtomicU64::new(1);
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let (outgoing, queued) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    let core = c2s.core.open(CLIENT_LANE);
    let _ = core
        .send(CoreEvent::Bind {
            jid: jid.clone(),
            session,
            sink: Box::new(ClientSink {
                queue: outgoing.clone(),
                backlog: backlog.clone(),
                limit: MAX_QUEUED_STANZAS,
            }),
        })
        .await;
    tracing::info!(%jid, "session bound");
    let live = Live {
        jid,
        session,
        core,
        outgoing,
        backlog,
        managed: None,
        claims: None,
    };
    (live, queued)
}

/// A resumed session: still bound in the core, its queue as it was left.
fn resume(c2s: &C2s, parked: Parked) -> (Live, mpsc::UnboundedReceiver<Outgoing>) {
    let claims = parked
        .managed
        .id
        .as_ref()
        .map(|id| c2s.resumption.hold(id, parked.jid.to_bare()));
    tracing::info!(jid = %parked.jid, "session resumed");
    let live = Live {
        jid: parked.jid,
        session: parked.session,
        core: parked.core,
        outgoing: parked.outgoing,
        backlog: parked.backlog,
        managed: Some(parked.managed),
        claims,
    };
    (live, parked.queued)
}

impl Live {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.managed
            .as_ref()
            .expect("stream management enabled")
            .counters
            .lock()
            .expect("counters lock")
    }

    /// A stream-management element from the client; `Err` when it ends the session.
    fn manage(&mut self, c2s: &C2s, element: Element) -> Result<(), Ending> {
        let nonza = match sm::parse(element) {
            Ok(nonza) => nonza,
            Err(text) => return Err(self.refuse(StreamCondition::BadFormat, text)),
        };
        match nonza {
            Nonza::Enable(_) if self.managed.is_some() => {
                let failed = sm::failed(DefinedCondition::UnexpectedRequest, None);
                let _ = self.outgoing.send(Outgoing::Nonza(failed));
            }
            Nonza::Enable(enable) => {
                let counters = Arc::new(Mutex::new(Counters::default()));
                let (id, claims) = if enable.resume && c2s.resumption.offered() {
                    let (id, claims) = c2s.resumption.register(self.jid.to_bare());
                    (Some(id), Some(claims))
                } else {
                    (None, None)
                };
                let timeout = c2s.resumption.timeout().as_secs();
                let enabled = sm::enabled(id.as_deref(), timeout);
                let _ = self
                    .outgoing
                    .send(Outgoing::Manage(enabled, counters.clone()));
                self.managed = Some(Managed { counters, id });
                self.claims = claims;
            }
            Nonza::Req(_) if self.managed.is_some() => {
                let answer = sm::answer(self.counters().handled());
                let _ = self.outgoing.send(Outgoing::Nonza(answer));
            }
            Nonza::Ack(ack) if self.managed.is_some() => {
                let mut counters = self.counters();
                if let Err(too_high) = counters.acknowledge(ack.h) {
                    drop(counters);
                    let _ = self.outgoing.send(Outgoing::Error(too_high.error()));
                    return Err(Ending::Closed(too_high.text()));
                }
                // Stanzas sent after the request it answers are still to be acknowledged.
                if counters.wants_request() {
                    let _ = self.outgoing.send(Outgoing::Nonza(sm::request()));
                }
            }
            Nonza::Resume(_) => {
                // A session is resumed instead of binding one, not on a bound stream.
                let failed = sm::failed(DefinedCondition::UnexpectedRequest, None);
                let _ = self.outgoing.send(Outgoing::Nonza(failed));
            }
            Nonza::Req(_) | Nonza::Ack(_) => {
                let text = "stream management is not enabled on this stream";
                return Err(self.refuse(StreamCondition::UnsupportedStanzaType, text.into()));
            }
            Nonza::Enabled(_) | Nonza::Resumed(_) | Nonza::Failed(_) => {
                let text = "the server's stream-management elements are not the client's";
                return Err(self.refuse(StreamCondition::UnsupportedStanzaType, text.into()));
            }
        }
        Ok(())
    }

    /// Ends the stream with a stream error, once what is queued before it is written.
    fn refuse(&self, condition: StreamCondition, text: String) -> Ending {
        let error = stream_error(condition, &text);
        let reason = error.to_string();
        let _ = self.outgoing.send(Outgoing::Error(error));
        Ending::Closed(reason)
    }

    /// The session without its connection, once the writer (told to stop) gave its queue back.
    async fn park(&mut self, written: Result<Written, tokio::task::JoinError>) -> Option<Parked> {
        let queued = match written {
            Ok(written) => written.queued,
            Err(error) => {
                // Not reached: the writer does not panic. Were it to, the session ends here.
                tracing::error!(%error, jid = %self.jid, "a session's writer failed");
                let _ = self
                    .core
                    .send(CoreEvent::Unbind {
                        jid: self.jid.clone(),
                        session: self.session,
                    })
                    .await;
                return None;
            }
        };
        let managed = self.managed.take().expect("a managed session");
        Some(Parked {
            jid: self.jid.clone(),
            session: self.session,
            core: self.core.clone(),
            outgoing: self.outgoing.clone(),
            queued,
            backlog: self.backlog.clone(),
            managed,
        })
    }
}

/// A stanza from a bound client, or why it is none (the stream ends). Its
/// `from`, whatever the client wrote, is the session's JID once the core takes it (RFC 6120
/// §8.1.2.1: the server overrides it), which is what a resumed stream whose client thinks it has
/// another resource needs.
fn checked(stanza: Element) -> Result<Element, String> {
    if stanza.ns() != CLIENT_NS || !matches!(stanza.name(), "message" | "presence" | "iq") {
        return Err(format!(
            "<{} xmlns='{}'/> is not a stanza",
            stanza.name(),
            stanza.ns()
        ));
    }
    Ok(stanza)
}

/// Why the reader stops the writer.
enum Stop {
    /// The connection is gone: give the queue back.
    Detach,
    /// Another stream resumed the session: say so on this one, then give the queue back.
    Conflict,
}

/// What the writer gives back when it ends: the session's queue, and whether it ended because
/// the connection failed (rather than the stream being closed).
struct Written {
    queued: mpsc::UnboundedReceiver<Outgoing>,
    broken: bool,
}

/// Writes what the session is sent, everything queued in one flush, until the stream ends or
/// the reader stops it. With `resend` (a resumed session's counts), the unacknowledged stanzas
/// go first.
async fn write_loop(
    mut writer: impl StreamSink,
    mut queued: mpsc::UnboundedReceiver<Outgoing>,
    backlog: Arc<Backlog>,
    resend: Option<Arc<Mutex<Counters>>>,
    mut stop: mpsc::UnboundedReceiver<Stop>,
    _writers: Arc<()>,
) -> Written {
    let mut listening = true;
    if let Some(counters) = &resend {
        let mut counters = counters.lock().expect("counters lock");
        counters.reattached();
        for stanza in counters.unacked() {
            writer.stanza(stanza);
        }
        if counters.wants_request() {
            writer.element(sm::request());
        }
    }
    let mut counters = resend;
    loop {
        let mut ends = false;
        let mut stanzas = 0;
        if writer.queued_bytes() == 0 {
            let first = tokio::select! {
                item = queued.recv() => item,
                order = stop.recv(), if listening => match order {
                    Some(order) => return stopped(writer, queued, order).await,
                    None => {
                        listening = false;
                        continue;
                    }
                },
            };
            let Some(first) = first else {
                return Written {
                    queued,
                    broken: false,
                };
            };
            let mut next = Some(first);
            while let Some(item) = next.take() {
                match item {
                    Outgoing::Stanza(stanza) => {
                        writer.stanza(&stanza);
                        stanzas += 1;
                        if let Some(counters) = &counters {
                            let mut counters = counters.lock().expect("counters lock");
                            counters.sent(stanza);
                            if counters.unacked_len() > MAX_QUEUED_STANZAS {
                                tracing::warn!("a client acknowledges nothing: ending its stream");
                                let text = format!(
                                    "more than {MAX_QUEUED_STANZAS} stanzas unacknowledged"
                                );
                                let condition = StreamCondition::ResourceConstraint;
                                writer.error(stream_error(condition, &text));
                                ends = true;
                            }
                        }
                    }
                    Outgoing::Nonza(element) => writer.element(element),
                    Outgoing::Manage(enabled, managed) => {
                        writer.element(enabled);
                        counters = Some(managed);
                    }
                    Outgoing::Error(error) => {
                        writer.error(error);
                        ends = true;
                    }
                    Outgoing::End => {
                        writer.close();
                        ends = true;
                    }
                }
                if !ends && writer.queued_bytes() < 64 * 1024 {
                    next = queued.try_recv().ok();
                }
            }
            if !ends
                && counters
                    .as_ref()
                    .is_some_and(|counters| counters.lock().expect("counters lock").wants_request())
            {
                writer.element(sm::request());
            }
        }
        // The reader may stop the writer during a flush that does not finish (the connection
        // is gone); what the flush held is counted as sent and goes again on resumption.
        let flushed = {
            let flush = tokio::time::timeout(WRITE_TIMEOUT, writer.flush());
            tokio::pin!(flush);
            loop {
                tokio::select! {
                    flushed = &mut flush => break Ok(flushed),
                    order = stop.recv(), if listening => match order {
                        Some(order) => break Err(order),
                        None => listening = false,
                    },
                }
            }
        };
        backlog.written(stanzas);
        match flushed {
            Err(order) => return stopped(writer, queued, order).await,
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(_))) => {
                return Written {
                    queued,
                    broken: true,
                }
            }
            Ok(Err(_)) => {
                tracing::info!("a client took nothing for {WRITE_TIMEOUT:?}: dropping it");
                return Written {
                    queued,
                    broken: true,
                };
            }
        }
        if ends {
            let _ = writer.shutdown().await;
            return Written {
                queued,
                broken: false,
            };
        }
    }
}

/// The writer stopped by the reader: on a takeover, the old stream hears why.
async fn stopped(
    mut writer: impl StreamSink,
    queued: mpsc::UnboundedReceiver<Outgoing>,
    order: Stop,
) -> Written {
    if let Stop::Conflict = order {
        let text = "the session was resumed on another stream";
        writer.error(stream_error(StreamCondition::Conflict, text));
        let grace = std::time::Duration::from_secs(5);
        if let Ok(Ok(())) = tokio::time::timeout(grace, writer.flush()).await {
            let _ = tokio::time::timeout(grace, writer.shutdown()).await;
        }
    }
    Written {
        queued,
        broken: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stanzas_pass_whatever_their_from() {
        let stanza = |xml: &str| -> Element { xml.parse().unwrap() };
        for ok in [
            "<message xmlns='jabber:client'/>",
            "<message xmlns='jabber:client' from='juliet@localhost/phone'/>",
            "<iq xmlns='jabber:client' from='not a jid@'/>",
        ] {
            assert!(checked(stanza(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "<body xmlns='jabber:client'/>",
            "<message xmlns='urn:example:other'/>",
        ] {
            assert!(checked(stanza(bad)).is_err(), "{bad}");
        }
    }
}
