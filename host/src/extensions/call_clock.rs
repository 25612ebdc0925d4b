//! WASI's wall clock inside an extension: the instant of the MUC call it runs in, so what a
//! guest's runtime reads (`Date.now()`, Python's `time.time()`) agrees with `clock.now` and with
//! the waits of a conversation script.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wasmtime_wasi::HostWallClock;

/// Shared by an instance's WASI context and the host, which sets it before each hook call.
#[derive(Clone, Default)]
pub struct CallClock(Arc<AtomicU64>);

impl CallClock {
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
}

impl HostWallClock for CallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        match self.0.load(Ordering::Relaxed) {
            // Before any hook call (`describe`): the machine's clock.
            0 => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
            now_ms => Duration::from_millis(now_ms),
        }
    }
}
