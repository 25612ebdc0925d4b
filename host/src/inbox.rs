//! The core thread's inbox: one small bounded queue (a lane) per source of events (each client
//! connection, the component link, the control socket), served round-robin one event at a time.
//! A connection with a backlog holds at most its lane's capacity; once the lane is full its
//! reader waits, stops reading its socket, and TCP pushes back on it alone. An event from any
//! other source waits behind at most one event of each source with work waiting (and the rest of
//! the batch the core is in), however long the backlogs are.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flume::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::Semaphore;

use crate::core_event::CoreEvent;

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

/// One source's queue.
struct LaneState {
    events: VecDeque<CoreEvent>,
    /// In the ready queue, or being served: set while it has events.
    scheduled: bool,
    /// The core is gone: nothing sent is handled.
    closed: bool,
}

struct Queue {
    state: Mutex<LaneState>,
    /// Free places: a sender takes one per event, the core gives it back once it took the event.
    space: Semaphore,
}

/// Where a source sends its events; clones share the lane (and its order).
#[derive(Clone)]
pub struct Lane {
    queue: Arc<Queue>,
    ready: Sender<Arc<Queue>>,
}

/// The core gave up on its inbox.
#[derive(Debug)]
pub struct Closed;

impl Lane {
    /// Queues `event` behind this lane's earlier ones, waiting while the lane is full.
    pub async fn send(&self, event: CoreEvent) -> Result<(), Closed> {
        let place = self.queue.space.acquire().await.map_err(|_| Closed)?;
        place.forget();
        let mut state = self.queue.state.lock().expect("lane lock");
        if state.closed {
            return Err(Closed);
        }
        state.events.push_back(event);
        if !state.scheduled {
            state.scheduled = true;
            if self.ready.send(self.queue.clone()).is_err() {
                state.closed = true;
                return Err(Closed);
            }
        }
        Ok(())
    }
}

/// Opens lanes into one inbox.
#[derive(Clone)]
pub struct Lanes {
    ready: Sender<Arc<Queue>>,
}

impl Lanes {
    /// A new lane holding at most `capacity` events.
    pub fn open(&self, capacity: usize) -> Lane {
        Lane {
            queue: Arc::new(Queue {
                state: Mutex::new(LaneState {
                    events: VecDeque::new(),
                    scheduled: false,
                    closed: false,
                }),
                space: Semaphore::new(capacity.max(1)),
            }),
            ready: self.ready.clone(),
        }
    }
}

/// The core's side: lanes with events waiting, in turn.
pub struct Inbox {
    ready: Receiver<Arc<Queue>>,
    /// The lanes in line, front first: newly ready ones join at the back, and a lane served
    /// goes to the back again while it has more.
    turns: VecDeque<Arc<Queue>>,
}

pub fn inbox() -> (Lanes, Inbox) {
    let (ready, waiting) = flume::unbounded();
    let inbox = Inbox {
        ready: waiting,
        turns: VecDeque::new(),
    };
    (Lanes { ready }, inbox)
}

impl Inbox {
    /// The next event in turn, waiting up to `timeout` for one. Disconnected once every lane is
    /// gone and nothing waits.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<CoreEvent, RecvTimeoutError> {
        self.join_ready();
        if self.turns.is_empty() {
            let queue = self.ready.recv_timeout(timeout)?;
            self.turns.push_back(queue);
        }
        Ok(self.take())
    }

    /// The next event in turn, if one is waiting.
    pub fn try_recv(&mut self) -> Option<CoreEvent> {
        self.join_ready();
        (!self.turns.is_empty()).then(|| self.take())
    }

    fn join_ready(&mut self) {
        self.turns.extend(self.ready.try_iter());
    }

    /// One event from the lane whose turn it is; the lane goes to the back if it has more.
    fn take(&mut self) -> CoreEvent {
        let queue = self.turns.pop_front().expect("a lane in line");
        let (event, more) = {
            let mut state = queue.state.lock().expect("lane lock");
            let event = state
                .events
                .pop_front()
                .expect("a lane in line has an event");
            state.scheduled = !state.events.is_empty();
            (event, state.scheduled)
        };
        queue.space.add_permits(1);
        if more {
            self.turns.push_back(queue);
        }
        event
    }
}

impl Drop for Inbox {
    /// Senders waiting for room in a full lane hear that the core is gone.
    fn drop(&mut self) {
        self.join_ready();
        for queue in self.turns.drain(..) {
            queue.state.lock().expect("lane lock").closed = true;
            queue.space.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_stanza(id: &str) -> CoreEvent {
        let stanza = format!("<message xmlns='jabber:client' id='{id}'/>");
        CoreEvent::FromHost(stanza.parse().unwrap())
    }

    /// Polls once: whether it would wait.
    fn is_pending<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut context).is_pending()
    }

    fn id(event: CoreEvent) -> String {
        match event {
            CoreEvent::FromHost(stanza) => stanza.attr("id").unwrap().to_string(),
            _ => panic!("not a test event"),
        }
    }

    #[tokio::test]
    async fn a_lane_with_a_backlog_takes_turns_with_the_others() {
        let (lanes, mut inbox) = inbox();
        let flood = lanes.open(1000);
        let quiet = lanes.open(1000);
        for n in 0..500 {
            flood.send(host_stanza(&format!("flood{n}"))).await.unwrap();
        }
        quiet.send(host_stanza("quiet0")).await.unwrap();
        quiet.send(host_stanza("quiet1")).await.unwrap();
        let order: Vec<String> = std::iter::from_fn(|| inbox.try_recv()).map(id).collect();
        assert_eq!(
            order[..5],
            ["flood0", "quiet0", "flood1", "quiet1", "flood2"],
            "the quiet lane's events come in turn, not after the backlog"
        );
        assert_eq!(order.len(), 502);
        let flood_order: Vec<&String> = order.iter().filter(|id| id.starts_with("flood")).collect();
        assert!(
            flood_order
                .iter()
                .enumerate()
                .all(|(n, id)| **id == format!("flood{n}")),
            "each lane keeps its own order"
        );
    }

    #[tokio::test]
    async fn a_full_lane_makes_its_sender_wait_and_no_other() {
        let (lanes, mut inbox) = inbox();
        let flood = lanes.open(2);
        let quiet = lanes.open(2);
        flood.send(host_stanza("f0")).await.unwrap();
        flood.send(host_stanza("f1")).await.unwrap();
        let third = flood.send(host_stanza("f2"));
        tokio::pin!(third);
        assert!(is_pending(third.as_mut()), "a full lane's sender waits");
        quiet.send(host_stanza("q0")).await.unwrap();
        assert_eq!(id(inbox.try_recv().unwrap()), "f0");
        third.await.unwrap();
        let rest: Vec<String> = std::iter::from_fn(|| inbox.try_recv()).map(id).collect();
        assert_eq!(rest, ["q0", "f1", "f2"]);
    }

    #[tokio::test]
    async fn senders_hear_that_the_core_is_gone() {
        let (lanes, inbox) = inbox();
        let lane = lanes.open(1);
        lane.send(host_stanza("a")).await.unwrap();
        let waiting = lane.send(host_stanza("b"));
        tokio::pin!(waiting);
        assert!(is_pending(waiting.as_mut()));
        drop(inbox);
        assert!(waiting.await.is_err());
        let idle = lanes.open(1);
        assert!(idle.send(host_stanza("c")).await.is_err());
    }

    #[test]
    fn every_lane_gone_and_nothing_waiting_disconnects() {
        let (lanes, mut inbox) = inbox();
        drop(lanes);
        assert_eq!(
            inbox.recv_timeout(Duration::from_secs(5)).err(),
            Some(RecvTimeoutError::Disconnected)
        );
    }
}
