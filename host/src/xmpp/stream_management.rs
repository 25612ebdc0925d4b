//! Stream management (XEP-0198 v1.6) on a client stream: its elements, and the counters both
//! ends keep. The server counts the stanzas it handled from the client (its `h`), and keeps each
//! stanza it sent until the client acknowledges it, so that a resumed stream can send again
//! exactly what the client did not get. Counts are modulo 2^32 (XEP-0198 §4).

use std::collections::VecDeque;

use minidom::Element;
use xmpp_parsers::sm::{
    Enabled, Failed, HandledCountTooHigh, Nonza, Resumed, StreamId, StreamManagement, A, R,
};
use xmpp_parsers::stanza_error::DefinedCondition;
use xmpp_parsers::stream_error::{DefinedCondition as StreamCondition, StreamError};

use super::wire::stream_error;
use crate::outbound::Outbound;

pub const SM_NS: &str = "urn:xmpp:sm:3";

/// The stream feature, offered once the client has authenticated.
pub fn feature() -> StreamManagement {
    StreamManagement { optional: false }
}

/// A stream-management element from the client; `Err` says why it is not one we take.
pub fn parse(element: Element) -> Result<Nonza, String> {
    let name = element.name().to_string();
    Nonza::try_from(element).map_err(|error| format!("<{name} xmlns='{SM_NS}'/>: {error}"))
}

pub fn enabled(id: Option<&str>, max_seconds: u64) -> Element {
    let enabled = Enabled {
        id: id.map(|id| StreamId(id.to_string())),
        location: None,
        max: id.map(|_| max_seconds.min(u32::MAX as u64) as u32),
        resume: id.is_some(),
    };
    enabled.into()
}

pub fn resumed(previd: &str, h: u32) -> Element {
    let resumed = Resumed {
        h,
        previd: StreamId(previd.to_string()),
    };
    resumed.into()
}

/// `<failed/>` with a stanza error condition (XEP-0198 §6), and our `h` when there is a stream
/// it applies to.
pub fn failed(condition: DefinedCondition, h: Option<u32>) -> Element {
    let failed = Failed {
        h,
        error: Some(condition),
    };
    failed.into()
}

pub fn answer(h: u32) -> Element {
    A::new(h).into()
}

pub fn request() -> Element {
    R.into()
}

/// An `h` acknowledging more stanzas than were sent (XEP-0198 §4): the stream ends with
/// `undefined-condition` holding [`TooHigh::application`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooHigh {
    pub h: u32,
    pub sent: u32,
}

impl TooHigh {
    pub fn text(&self) -> String {
        format!(
            "you acknowledged {} stanzas, but {} were sent",
            self.h, self.sent
        )
    }

    /// The stream error that ends the stream: `undefined-condition`, refined by
    /// `<handled-count-too-high/>`.
    pub fn error(&self) -> StreamError {
        let mut error = stream_error(StreamCondition::UndefinedCondition, &self.text());
        let too_high = HandledCountTooHigh {
            h: self.h,
            send_count: self.sent,
        };
        error.application_specific.push(too_high.into());
        error
    }
}

/// The counts of one managed stream, which a resumed stream takes over.
#[derive(Default)]
pub struct Counters {
    /// Stanzas handled from the client since `<enabled/>`: our `h`.
    handled: u32,
    /// Stanzas sent to the client since `<enabled/>`.
    sent: u32,
    /// What was sent and not acknowledged yet, oldest first.
    unacked: VecDeque<Outbound>,
    /// An `<r/>` is out and not answered yet: one at a time is enough.
    requested: bool,
}

impl Counters {
    pub fn handled_one(&mut self) {
        self.handled = self.handled.wrapping_add(1);
    }

    pub fn handled(&self) -> u32 {
        self.handled
    }

    /// `stanza` was sent (or queued while the client is away, to be sent on resumption): kept
    /// until acknowledged.
    pub fn sent(&mut self, stanza: Outbound) {
        self.sent = self.sent.wrapping_add(1);
        self.unacked.push_back(stanza);
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// The client has handled `h` stanzas in all: what they cover is forgotten.
    pub fn acknowledge(&mut self, h: u32) -> Result<(), TooHigh> {
        let acked_before = self.sent.wrapping_sub(self.unacked.len() as u32);
        let newly = h.wrapping_sub(acked_before) as usize;
        if newly > self.unacked.len() {
            return Err(TooHigh { h, sent: self.sent });
        }
        self.unacked.drain(..newly);
        self.requested = false;
        Ok(())
    }

    /// The stanzas to send again on a resumed stream, oldest first.
    pub fn unacked(&self) -> impl Iterator<Item = &Outbound> {
        self.unacked.iter()
    }

    /// The unacknowledged stanzas, taken when the session ends for good.
    pub fn take_unacked(&mut self) -> Vec<Outbound> {
        self.unacked.drain(..).collect()
    }

    /// Whether to ask the client for an ack now: something is unacknowledged and no request is
    /// out. Counts the request as sent.
    pub fn wants_request(&mut self) -> bool {
        if self.requested || self.unacked.is_empty() {
            return false;
        }
        self.requested = true;
        true
    }

    /// A new connection carries the stream: an `<r/>` sent on the old one may be lost.
    pub fn reattached(&mut self) {
        self.requested = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> Outbound {
        format!("<message xmlns='jabber:client' id='m{n}' to='a@b/c'/>")
            .parse::<Element>()
            .unwrap()
            .into()
    }

    fn ids(counters: &Counters) -> Vec<String> {
        counters
            .unacked()
            .map(|stanza| stanza.element().attr("id").unwrap().to_string())
            .collect()
    }

    #[test]
    fn acks_forget_what_they_cover_and_the_rest_is_sent_again_in_order() {
        let mut counters = Counters::default();
        for n in 0..5 {
            counters.sent(message(n));
        }
        counters.acknowledge(2).unwrap();
        assert_eq!(ids(&counters), ["m2", "m3", "m4"]);
        // An ack repeated forgets nothing more.
        counters.acknowledge(2).unwrap();
        assert_eq!(counters.unacked_len(), 3);
        counters.sent(message(5));
        counters.acknowledge(4).unwrap();
        assert_eq!(ids(&counters), ["m4", "m5"]);
        counters.acknowledge(6).unwrap();
        assert_eq!(counters.unacked_len(), 0);
    }

    #[test]
    fn an_ack_for_more_than_was_sent_is_refused_and_changes_nothing() {
        let mut counters = Counters::default();
        for n in 0..3 {
            counters.sent(message(n));
        }
        assert_eq!(counters.acknowledge(4), Err(TooHigh { h: 4, sent: 3 }));
        assert_eq!(counters.unacked_len(), 3);
        let error = TooHigh { h: 4, sent: 3 }.error();
        assert_eq!(error.condition, StreamCondition::UndefinedCondition);
        let too_high = &error.application_specific[0];
        assert_eq!(too_high.attr("h"), Some("4"));
        assert_eq!(too_high.attr("send-count"), Some("3"));
    }

    #[test]
    fn the_counts_wrap_around_at_two_to_the_32() {
        let mut counters = Counters {
            sent: u32::MAX - 1,
            handled: u32::MAX,
            ..Counters::default()
        };
        counters.handled_one();
        assert_eq!(counters.handled(), 0);
        for n in 0..4 {
            counters.sent(message(n));
        }
        // Sent: 2^32-1, 0, 1, 2 (mod 2^32); the client has had the first two.
        counters.acknowledge(0).unwrap();
        assert_eq!(ids(&counters), ["m2", "m3"]);
        assert_eq!(
            counters.acknowledge(3),
            Err(TooHigh { h: 3, sent: 2 }),
            "past the wrap, still too high"
        );
        counters.acknowledge(2).unwrap();
        assert_eq!(counters.unacked_len(), 0);
    }

    #[test]
    fn one_request_is_out_at_a_time() {
        let mut counters = Counters::default();
        assert!(!counters.wants_request(), "nothing to acknowledge");
        counters.sent(message(0));
        assert!(counters.wants_request());
        counters.sent(message(1));
        assert!(!counters.wants_request(), "one is out already");
        counters.acknowledge(1).unwrap();
        assert!(
            counters.wants_request(),
            "the answer left one unacknowledged"
        );
        counters.reattached();
        assert!(counters.wants_request());
    }

    #[test]
    fn elements_parse_and_build() {
        let element: Element = "<resume xmlns='urn:xmpp:sm:3' previd='abc' h='7'/>"
            .parse()
            .unwrap();
        match parse(element).unwrap() {
            Nonza::Resume(resume) => {
                assert_eq!((resume.previd.0.as_str(), resume.h), ("abc", 7));
            }
            other => panic!("{other:?}"),
        }
        let bad: Element = "<a xmlns='urn:xmpp:sm:3' h='many'/>".parse().unwrap();
        assert!(parse(bad).is_err());
        let resumable = enabled(Some("abc"), 300);
        assert_eq!(resumable.attr("id"), Some("abc"));
        assert_eq!(resumable.attr("resume"), Some("true"));
        assert_eq!(resumable.attr("max"), Some("300"));
        let acks_only = enabled(None, 300);
        assert_eq!(acks_only.attr("id"), None);
        assert_ne!(acks_only.attr("resume"), Some("true"));
    }
}
