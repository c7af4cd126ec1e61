//! Time comes in through this trait so tests can move it; the daemon's clock
//! reads the system's. One reading holds both clocks: the wall clock (token
//! expiry, caveats, the authority's timestamps) and the monotonic one
//! (silence, the breaker, the negative cache, stall deadlines). A check
//! reads the clock once and passes the reading down.

use std::fmt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One reading of the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall: SystemTime,
    pub mono: Instant,
}

impl Now {
    /// The wall time as unix milliseconds (0 before 1970).
    pub fn unix_ms(&self) -> i64 {
        self.wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

/// A source of the current time.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Now;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now { wall: SystemTime::now(), mono: Instant::now() }
    }
}

#[cfg(test)]
pub(crate) use manual::ManualClock;

#[cfg(test)]
mod manual {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant, SystemTime};

    use super::{Clock, Now};

    /// A clock that stands still until told to move.
    #[derive(Debug)]
    pub(crate) struct ManualClock {
        start: Now,
        elapsed: Mutex<Duration>,
    }

    impl ManualClock {
        /// A clock reading `wall` (its monotonic side starts at the real now).
        pub(crate) fn at(wall: SystemTime) -> Arc<Self> {
            Arc::new(Self { start: Now { wall, mono: Instant::now() }, elapsed: Mutex::default() })
        }

        /// Moves both sides forward by `by`.
        pub(crate) fn advance(&self, by: Duration) {
            *self.elapsed.lock().expect("clock lock") += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Now {
            let elapsed = *self.elapsed.lock().expect("clock lock");
            Now { wall: self.start.wall + elapsed, mono: self.start.mono + elapsed }
        }
    }
}
