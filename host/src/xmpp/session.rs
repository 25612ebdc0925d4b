//! A bound client session, on any transport: its stanzas go to the core thread (checked: only
//! stanzas, only from itself); the core's deliveries come back through a [`SessionSink`] to a
//! writer task, which writes whatever is queued in one flush. The backlog between the two
//! bounds what a slow reader can make the server hold.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use jid::{FullJid, Jid};
use minidom::Element;
use tokio::sync::{mpsc, oneshot, Notify};

use super::c2s::{C2s, CLIENT_NS, MAX_QUEUED_STANZAS, PAUSE_READING_AT, WRITE_TIMEOUT};
use super::stream::StreamEvent;
use super::transport::{ClientTransport, EventSource, StreamSink};
use super::wire::ReadError;
use crate::core_event::CoreEvent;
use crate::inbox::CLIENT_LANE;
use crate::outbound::Outbound;
use crate::router::SessionSink;

pub async fn run<T: ClientTransport>(c2s: &C2s, conn: T, jid: FullJid, peer: SocketAddr) {
    let (mut reader, writer) = conn.split();
    let (outgoing, queued) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    let (writer_done, mut writer_ended) = oneshot::channel::<()>();
    tokio::spawn(write_loop(
        writer,
        queued,
        backlog.clone(),
        writer_done,
        c2s.writers.clone(),
    ));
    static SESSIONS: AtomicU64 = AtomicU64::new(1);
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let core = c2s.core.open(CLIENT_LANE);
    let _ = core
        .send(CoreEvent::Bind {
            jid: jid.clone(),
            session,
            sink: Box::new(ClientSink {
                queue: outgoing.clone(),
                backlog: backlog.clone(),
            }),
        })
        .await;
    tracing::info!(%peer, %jid, "session bound");
    let reason = loop {
        let event = tokio::select! {
            event = async {
                backlog.below(PAUSE_READING_AT).await;
                reader.next().await
            } => event,
            _ = &mut writer_ended => break "closed by the server".to_string(),
        };
        match event {
            Ok(StreamEvent::Element(stanza)) => match checked(&jid, stanza) {
                Ok(stanza) => {
                    c2s.metrics.stanza_in(stanza.name());
                    let _ = core
                        .send(CoreEvent::FromClient {
                            from: jid.clone(),
                            session,
                            stanza,
                        })
                        .await;
                }
                Err((condition, text)) => {
                    let _ = outgoing.send(Outgoing::Error(condition, text.clone()));
                    break format!("{condition}: {text}");
                }
            },
            Ok(StreamEvent::Close) => {
                let _ = outgoing.send(Outgoing::End);
                break "closed by the client".to_string();
            }
            Ok(StreamEvent::Open(_)) => unreachable!("one header per stream"),
            Err(ReadError::Stream(error)) => {
                let _ = outgoing.send(Outgoing::Error(error.condition(), error.text()));
                break error.to_string();
            }
            Err(error) => break error.to_string(),
        }
    };
    // The rooms it was in hear it leave (RFC 6121 directed presence), clean exit or not.
    let _ = core
        .send(CoreEvent::Unbind {
            jid: jid.clone(),
            session,
        })
        .await;
    tracing::info!(%peer, %jid, reason, "session ended");
}

/// A stanza from a bound client, or the stream error that ends the stream because of it.
fn checked(session: &FullJid, stanza: Element) -> Result<Element, (&'static str, String)> {
    if stanza.ns() != CLIENT_NS || !matches!(stanza.name(), "message" | "presence" | "iq") {
        let text = format!(
            "<{} xmlns='{}'/> is not a stanza",
            stanza.name(),
            stanza.ns()
        );
        return Err(("unsupported-stanza-type", text));
    }
    // RFC 6120 §8.1.2.1: a client may only name itself (its full or bare JID) as the sender.
    if let Some(from) = stanza.attr("from") {
        let allowed = match Jid::new(from) {
            Ok(jid) => jid == session.clone() || jid == session.to_bare(),
            Err(_) => false,
        };
        if !allowed {
            return Err((
                "invalid-from",
                format!("this stream is {session}, not {from}"),
            ));
        }
    }
    Ok(stanza)
}

/// What the writer task sends.
enum Outgoing {
    Stanza(Outbound),
    /// A stream error, then the end of the stream.
    Error(&'static str, String),
    /// The end of the stream.
    End,
}

/// Stanzas queued for a session's socket and not yet written.
#[derive(Default)]
struct Backlog {
    waiting: AtomicUsize,
    /// Told each time the writer has written some.
    drained: Notify,
}

impl Backlog {
    /// Counts one more stanza queued; returns how many were waiting before it.
    fn queued(&self) -> usize {
        self.waiting.fetch_add(1, Ordering::Relaxed)
    }

    fn written(&self, stanzas: usize) {
        self.waiting.fetch_sub(stanzas, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    /// Returns once fewer than `limit` stanzas are waiting.
    async fn below(&self, limit: usize) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a write between the two is not missed.
            drained.as_mut().enable();
            if self.waiting.load(Ordering::Relaxed) < limit {
                return;
            }
            drained.await;
        }
    }
}

struct ClientSink {
    queue: mpsc::UnboundedSender<Outgoing>,
    backlog: Arc<Backlog>,
}

impl SessionSink for ClientSink {
    fn deliver(&self, stanza: Outbound) {
        let waiting = self.backlog.queued();
        if waiting < MAX_QUEUED_STANZAS {
            let _ = self.queue.send(Outgoing::Stanza(stanza));
        } else if waiting == MAX_QUEUED_STANZAS {
            tracing::warn!("a client reads too slowly: ending its stream");
            let text = format!("more than {MAX_QUEUED_STANZAS} stanzas waiting for the client");
            let _ = self
                .queue
                .send(Outgoing::Error("resource-constraint", text));
        }
    }

    fn close(&self, condition: &'static str) {
        let _ = self.queue.send(Outgoing::Error(condition, String::new()));
    }
}

/// Writes what the session is sent, everything queued in one flush, until the stream ends.
async fn write_loop(
    mut writer: impl StreamSink,
    mut queued: mpsc::UnboundedReceiver<Outgoing>,
    backlog: Arc<Backlog>,
    _done: oneshot::Sender<()>,
    _writers: Arc<()>,
) {
    while let Some(first) = queued.recv().await {
        let mut ends = false;
        let mut stanzas = 0;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Stanza(stanza) => {
                    writer.stanza(&stanza);
                    stanzas += 1;
                }
                Outgoing::Error(condition, text) => {
                    writer.error(condition, &text);
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
        match tokio::time::timeout(WRITE_TIMEOUT, writer.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("a client took nothing for {WRITE_TIMEOUT:?}: dropping it");
                return;
            }
        }
        backlog.written(stanzas);
        if ends {
            let _ = writer.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_that_stops_reading_is_cut_off_at_the_bound() {
        let (queue, mut queued) = mpsc::unbounded_channel();
        let sink = ClientSink {
            queue,
            backlog: Arc::default(),
        };
        let stanza: Element = "<message xmlns='jabber:client'/>".parse().unwrap();
        for _ in 0..MAX_QUEUED_STANZAS + 5 {
            sink.deliver(stanza.clone().into());
        }
        let mut stanzas = 0;
        let mut errors = Vec::new();
        while let Ok(item) = queued.try_recv() {
            match item {
                Outgoing::Stanza(_) => stanzas += 1,
                Outgoing::Error(condition, _) => errors.push(condition),
                Outgoing::End => panic!("not an end"),
            }
        }
        assert_eq!(stanzas, MAX_QUEUED_STANZAS);
        assert_eq!(errors, ["resource-constraint"]);
    }

    #[tokio::test]
    async fn a_session_with_a_backlog_is_read_again_once_it_drains() {
        let backlog = Arc::new(Backlog::default());
        for _ in 0..PAUSE_READING_AT {
            backlog.queued();
        }
        let reader = tokio::spawn({
            let backlog = backlog.clone();
            async move { backlog.below(PAUSE_READING_AT).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !reader.is_finished(),
            "read while the backlog is at the pause"
        );
        backlog.written(1);
        tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("still paused after the writer drained")
            .unwrap();
    }

    #[test]
    fn a_client_may_name_itself_and_no_one_else() {
        let session: FullJid = "romeo@localhost/phone".parse().unwrap();
        let stanza = |xml: &str| -> Element { xml.parse().unwrap() };
        for ok in [
            "<message xmlns='jabber:client'/>",
            "<message xmlns='jabber:client' from='romeo@localhost/phone'/>",
            "<presence xmlns='jabber:client' from='Romeo@LOCALHOST'/>",
        ] {
            assert!(checked(&session, stanza(ok)).is_ok(), "{ok}");
        }
        for (bad, condition) in [
            (
                "<message xmlns='jabber:client' from='juliet@localhost/phone'/>",
                "invalid-from",
            ),
            (
                "<message xmlns='jabber:client' from='romeo@localhost/other'/>",
                "invalid-from",
            ),
            (
                "<iq xmlns='jabber:client' from='not a jid@'/>",
                "invalid-from",
            ),
            ("<r xmlns='urn:xmpp:sm:3'/>", "unsupported-stanza-type"),
            ("<body xmlns='jabber:client'/>", "unsupported-stanza-type"),
        ] {
            assert_eq!(
                checked(&session, stanza(bad)).unwrap_err().0,
                condition,
                "{bad}"
            );
        }
    }
}
