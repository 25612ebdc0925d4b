//! The per-occupant message rate in rooms (as Prosody's `muc_rate_limit`): each sender (full JID)
//! may send a room, and the room's occupants, up to `per_second` messages a second after a
//! burst. Kept by the host in front of the MUC logic, so it holds in component mode as in bundled
//! mode, and a refused message costs no plugin call.
//!
//! Memory: one bucket per sender and room that sent lately. A bucket full again says no more than
//! a new one would, so those are dropped, all of them once per refill time.

use std::collections::HashMap;

use crate::token_bucket::TokenBucket;

/// Messages a second, after a burst.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MessageRateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl MessageRateLimit {
    /// How long an emptied bucket takes to fill up.
    fn refill_ms(&self) -> u64 {
        (f64::from(self.burst) / self.per_second * 1000.0).ceil() as u64
    }
}

pub struct MessageRate {
    limit: MessageRateLimit,
    /// By sender and room: `SENDER ROOM` (a space is in no JID).
    buckets: HashMap<String, TokenBucket>,
    swept_at_ms: u64,
}

impl MessageRate {
    pub fn new(limit: MessageRateLimit) -> MessageRate {
        MessageRate {
            limit,
            buckets: HashMap::new(),
            swept_at_ms: 0,
        }
    }

    pub fn limit(&self) -> MessageRateLimit {
        self.limit
    }

    /// Whether `sender` may send one more message to `room` (a bare JID) now, counting it if so.
    pub fn allow(&mut self, sender: &str, room: &str, now_ms: u64) -> bool {
        self.sweep(now_ms);
        let limit = self.limit;
        self.buckets
            .entry(format!("{sender} {room}"))
            .or_insert_with(|| TokenBucket::full(limit.per_second, f64::from(limit.burst), now_ms))
            .try_take(1.0, now_ms)
    }

    /// Senders and rooms tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn sweep(&mut self, now_ms: u64) {
        if now_ms
            < self
                .swept_at_ms
                .saturating_add(self.limit.refill_ms().max(1_000))
        {
            return;
        }
        self.buckets.retain(|_, bucket| !bucket.is_full(now_ms));
        self.swept_at_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: MessageRateLimit = MessageRateLimit {
        per_second: 2.0,
        burst: 4,
    };

    #[test]
    fn each_sender_has_its_own_bucket_in_each_room() {
        let mut rate = MessageRate::new(LIMIT);
        for _ in 0..4 {
            assert!(rate.allow("a@x/1", "room@muc", 0));
        }
        assert!(!rate.allow("a@x/1", "room@muc", 0));
        assert!(rate.allow("a@x/1", "other@muc", 0), "another room");
        assert!(rate.allow("a@x/2", "room@muc", 0), "another resource");
        assert!(
            rate.allow("a@x/1", "room@muc", 500),
            "refilled at 2 a second"
        );
    }

    #[test]
    fn buckets_full_again_are_forgotten() {
        let mut rate = MessageRate::new(LIMIT);
        for n in 0..1000 {
            assert!(rate.allow(&format!("u{n}@x/r"), "room@muc", 0));
        }
        assert_eq!(rate.tracked(), 1000);
        // Refill time is 2 s: by then every bucket but the one still in use is full again.
        for _ in 0..4 {
            rate.allow("busy@x/r", "room@muc", 1_900);
        }
        rate.allow("busy@x/r", "room@muc", 2_100);
        assert_eq!(rate.tracked(), 1, "only the busy sender's bucket is left");
    }
}
