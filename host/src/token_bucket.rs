//! A token bucket: `rate` tokens a second flow in, up to `burst`; what is spent comes out. The
//! flood limits use it (bytes a connection may send, messages an occupant may send to a room).
//! Time is milliseconds on whatever clock the caller keeps, so that tests can drive it.

#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_ms: f64,
    burst: f64,
    tokens: f64,
    at_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn full(per_second: f64, burst: f64, now_ms: u64) -> TokenBucket {
        TokenBucket {
            per_ms: per_second / 1000.0,
            burst,
            tokens: burst,
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        // A clock that goes back (a virtual one, reset) refills nothing rather than draining.
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.tokens = (self.tokens + elapsed as f64 * self.per_ms).min(self.burst);
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Takes `amount` if the bucket holds it; otherwise takes nothing.
    pub fn try_take(&mut self, amount: f64, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.tokens < amount {
            return false;
        }
        self.tokens -= amount;
        true
    }

    /// Takes `amount` whatever the bucket holds, going into debt: returns how many milliseconds
    /// until the debt is paid (0 when there is none).
    pub fn charge(&mut self, amount: f64, now_ms: u64) -> u64 {
        self.refill(now_ms);
        self.tokens -= amount;
        if self.tokens >= 0.0 {
            0
        } else {
            (-self.tokens / self.per_ms).ceil() as u64
        }
    }

    /// Whether it is full again: then it says no more than a new one would, and can be dropped.
    pub fn is_full(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills_it() {
        let mut bucket = TokenBucket::full(2.0, 3.0, 1_000);
        for _ in 0..3 {
            assert!(bucket.try_take(1.0, 1_000));
        }
        assert!(!bucket.try_take(1.0, 1_000), "the fourth of a burst of 3");
        assert!(
            !bucket.try_take(1.0, 1_499),
            "half a token after 499 ms at 2/s"
        );
        assert!(bucket.try_take(1.0, 1_500), "one token after 500 ms at 2/s");
        assert!(!bucket.try_take(1.0, 1_500));
        assert!(!bucket.is_full(2_999));
        assert!(
            bucket.is_full(10_000),
            "a long wait refills it, no further than the burst"
        );
        for _ in 0..3 {
            assert!(bucket.try_take(1.0, 10_000));
        }
        assert!(!bucket.try_take(1.0, 10_000));
    }

    #[test]
    fn a_refused_take_costs_nothing() {
        let mut bucket = TokenBucket::full(1.0, 2.0, 0);
        assert!(!bucket.try_take(3.0, 0), "more than the bucket holds");
        assert!(bucket.try_take(2.0, 0), "the refusal took nothing");
    }

    #[test]
    fn a_charge_goes_into_debt_and_says_how_long_it_lasts() {
        let mut bucket = TokenBucket::full(1000.0, 500.0, 0);
        assert_eq!(bucket.charge(400.0, 0), 0);
        assert_eq!(bucket.charge(600.0, 0), 500, "500 tokens of debt at 1000/s");
        assert_eq!(bucket.charge(0.0, 250), 250, "half of it paid after 250 ms");
        assert_eq!(bucket.charge(0.0, 500), 0);
    }

    #[test]
    fn a_clock_going_back_neither_refills_nor_drains() {
        let mut bucket = TokenBucket::full(1.0, 1.0, 5_000);
        assert!(bucket.try_take(1.0, 5_000));
        assert!(!bucket.try_take(1.0, 1_000));
        assert!(bucket.try_take(1.0, 6_000));
    }
}
