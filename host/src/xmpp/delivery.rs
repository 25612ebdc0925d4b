//! What a bound client session keeps whatever connection carries it: the queue the core's
//! deliveries wait in for the connection's writer (a [`SessionSink`] in the router), how many
//! wait, and its stream-management counts. With XEP-0198 resumption these outlive a dropped
//! connection (a [`Parked`] session) and pass to the one that resumes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jid::FullJid;
use tokio::sync::{mpsc, Notify};

use minidom::Element;
use xmpp_parsers::stream_error::{DefinedCondition, StreamError};

use super::stream_management::Counters;
use super::wire::stream_error;
use crate::inbox::Lane;
use crate::outbound::Outbound;
use crate::router::SessionSink;

/// What a session's writer is given, in order.
pub enum Outgoing {
    Stanza(Outbound),
    /// A stream-management element (`<a/>`, `<r/>`, `<failed/>`): not a stanza, not counted.
    Nonza(Element),
    /// `<enabled/>`: the stanzas after it are counted and kept until acknowledged.
    Manage(Element, Arc<Mutex<Counters>>),
    /// A stream error, then the end of the stream.
    Error(StreamError),
    /// The end of the stream.
    End,
}

/// Stanzas queued for a session's connection and not yet written.
#[derive(Default)]
pub struct Backlog {
    waiting: AtomicUsize,
    /// Told each time the writer has written some.
    drained: Notify,
}

impl Backlog {
    /// Counts one more stanza queued; returns how many were waiting before it.
    pub fn queued(&self) -> usize {
        self.waiting.fetch_add(1, Ordering::Relaxed)
    }

    pub fn written(&self, stanzas: usize) {
        self.waiting.fetch_sub(stanzas, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    /// Returns once fewer than `limit` stanzas are waiting.
    pub async fn below(&self, limit: usize) {
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

/// The session's entry in the router.
pub struct ClientSink {
    pub queue: mpsc::UnboundedSender<Outgoing>,
    pub backlog: Arc<Backlog>,
    /// Stanzas that may wait: past it the client reads too slowly and its stream ends.
    pub limit: usize,
}

impl SessionSink for ClientSink {
    fn deliver(&self, stanza: Outbound) {
        let waiting = self.backlog.queued();
        if waiting < self.limit {
            let _ = self.queue.send(Outgoing::Stanza(stanza));
        } else if waiting == self.limit {
            tracing::warn!("a client reads too slowly: ending its stream");
            let text = format!("more than {} stanzas waiting for the client", self.limit);
            let error = stream_error(DefinedCondition::ResourceConstraint, &text);
            let _ = self.queue.send(Outgoing::Error(error));
        }
    }

    fn close(&self, condition: DefinedCondition) {
        let _ = self
            .queue
            .send(Outgoing::Error(stream_error(condition, "")));
    }
}

/// A session's stream management once the client enabled it.
pub struct Managed {
    pub counters: Arc<Mutex<Counters>>,
    /// The id a new stream names to resume this one (None: resumption not asked or offered).
    pub id: Option<String>,
}

/// A session without a connection: bound in the router, its deliveries queued, waiting for a
/// stream to resume it (or handed from a live connection to the stream that resumes it).
pub struct Parked {
    pub jid: FullJid,
    /// The core's name for the session (see [`crate::core_event::CoreEvent::Bind`]).
    pub session: u64,
    /// Its lane into the core: what it sends stays in order across connections.
    pub core: Lane,
    pub outgoing: mpsc::UnboundedSender<Outgoing>,
    pub queued: mpsc::UnboundedReceiver<Outgoing>,
    pub backlog: Arc<Backlog>,
    pub managed: Managed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;
    use std::time::Duration;

    #[test]
    fn a_client_that_stops_reading_is_cut_off_at_the_bound() {
        let (queue, mut queued) = mpsc::unbounded_channel();
        let limit = 100;
        let sink = ClientSink {
            queue,
            backlog: Arc::default(),
            limit,
        };
        let stanza: Element = "<message xmlns='jabber:client'/>".parse().unwrap();
        for _ in 0..limit + 5 {
            sink.deliver(stanza.clone().into());
        }
        let mut stanzas = 0;
        let mut errors = Vec::new();
        while let Ok(item) = queued.try_recv() {
            match item {
                Outgoing::Stanza(_) => stanzas += 1,
                Outgoing::Error(error) => errors.push(error.condition),
                _ => panic!("neither a stanza nor an error"),
            }
        }
        assert_eq!(stanzas, limit);
        assert_eq!(errors, [DefinedCondition::ResourceConstraint]);
    }

    #[tokio::test]
    async fn a_session_with_a_backlog_is_read_again_once_it_drains() {
        let backlog = Arc::new(Backlog::default());
        let pause = 10;
        for _ in 0..pause {
            backlog.queued();
        }
        let reader = tokio::spawn({
            let backlog = backlog.clone();
            async move { backlog.below(pause).await }
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
}
