//! Wall time for plugins: the system's, or a virtual one the test host controls, so that what a
//! script sees never depends on how fast the machine runs it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64)
    }
}

/// A clock that moves only when told to.
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// 2026-01-01T00:00:00Z: a fixed start, so runs are repeatable.
    pub const START_MS: u64 = 1_767_225_600_000;

    pub fn new() -> ManualClock {
        ManualClock {
            now_ms: AtomicU64::new(Self::START_MS),
        }
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
