//! The fault schedule: every `--fault-every` seconds the next fault of a
//! fixed cycle. Faults of the link between verifier "us" and the authority
//! go through the proxy (black hole, cut, flapping, reset); the authority is
//! killed with SIGKILL and restarted on the same database and port, but only
//! in the first half of the run, so that its last incarnation lives long
//! enough to be judged. Later, a restart's slot stays quiet, so the link
//! faults of "us" keep the same mix and rate all along: every black hole
//! leaves a verifier's allocator holding a little more, and a run whose
//! judged part saw more of them than its warm-up would measure the schedule,
//! not a leak. The warm-up is one whole cycle, so every kind of fault has
//! struck before the baseline is taken.
//! Modes that add latency rather than silence (stall, delay) are left out:
//! the fail-closed bound does not hold for them (ARCHITECTURE.md, "Latency is
//! not silence"), and the soak checks that bound.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tally_tests::{Mode, Proxy};

/// Time after a fault before samples count as calm again: past the
/// fail-closed threshold and the longest reconnect backoff (5 s).
pub(crate) const SETTLE: Duration = Duration::from_secs(8);
/// Downtime of a short restart, and of a long one (past the fail-closed threshold).
const SHORT_DOWN: Duration = Duration::from_millis(300);
const LONG_DOWN: Duration = Duration::from_secs(3);
/// Longest cut and longest pass of one flap (each drawn up to it).
const MAX_CUT_MS: usize = 250;
const MAX_PASS_MS: usize = 300;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// SIGKILL the authority, wait, serve the same file on the same port.
    Restart { down: Duration },
    /// The link drops every byte both ways; then passes again and the dead connections end (FIN).
    BlackHole(Duration),
    /// Connections closed and new ones refused; then passes again.
    Cut(Duration),
    /// Cut and pass alternating at random for this long.
    Flap(Duration),
    /// Every connection reset (RST), new ones too, for a moment.
    Reset,
}

/// The cycle, in order. Restarts alternate short and long downtimes. The
/// long black hole comes first: while "us" fails closed behind it, every
/// check there waits for the authority (up to its 2 s timeout), which is when
/// that process grows most, so even a short run has it in its warm-up.
const CYCLE: [Fault; 10] = [
    Fault::BlackHole(Duration::from_secs(5)),
    Fault::Restart { down: SHORT_DOWN },
    Fault::Cut(Duration::from_secs(3)),
    Fault::Flap(Duration::from_secs(8)),
    Fault::Reset,
    Fault::BlackHole(Duration::from_secs(3)),
    Fault::Restart { down: LONG_DOWN },
    Fault::Cut(Duration::from_secs(1)),
    Fault::Flap(Duration::from_secs(4)),
    Fault::Reset,
];

/// From the start of a run whose faults come `every` apart (the first at
/// `every`) to the start of the cycle's last fault: the soak's warm-up.
pub(crate) fn cycle(every: Duration) -> Duration {
    every * CYCLE.len() as u32
}

/// The `n`th fault (from 0); none in a restart's slot once restarts are over.
pub(crate) fn nth(n: u64, restarts_allowed: bool) -> Option<Fault> {
    match CYCLE[(n % CYCLE.len() as u64) as usize] {
        Fault::Restart { .. } if !restarts_allowed => None,
        fault => Some(fault),
    }
}

impl Fault {
    /// How long the fault lasts.
    pub(crate) fn length(self) -> Duration {
        match self {
            Fault::Restart { down } => down,
            Fault::BlackHole(d) | Fault::Cut(d) | Fault::Flap(d) => d,
            Fault::Reset => RESET_FOR,
        }
    }

    pub(crate) fn describe(self) -> String {
        match self {
            Fault::Restart { down } => format!("authority kill -9, restarted after {down:?}"),
            Fault::BlackHole(d) => format!("us link black-holed for {d:?}"),
            Fault::Cut(d) => format!("us link cut for {d:?}"),
            Fault::Flap(d) => format!("us link flapping for {d:?}"),
            Fault::Reset => "us link reset".into(),
        }
    }

    /// Short name, for the totals.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::Restart { .. } => "restart",
            Fault::BlackHole(_) => "black hole",
            Fault::Cut(_) => "cut",
            Fault::Flap(_) => "flap",
            Fault::Reset => "reset",
        }
    }
}

/// How long new connections are reset after a reset.
const RESET_FOR: Duration = Duration::from_millis(500);

/// Runs a fault of the link to its end, leaving the proxy passing. A
/// restart is not a link fault: it does nothing here.
pub(crate) async fn on_link(proxy: Arc<Proxy>, fault: Fault, seed: u64) {
    match fault {
        Fault::Restart { .. } => {}
        Fault::BlackHole(d) => {
            proxy.set(Mode::BlackHole);
            tokio::time::sleep(d).await;
            proxy.set(Mode::Pass);
            // As when a NAT entry expires: the dead connections end. (Left
            // open, the authority would keep writing heartbeats into them,
            // which the proxy swallows, for as long as the proxy lives.)
            proxy.close_all();
        }
        Fault::Cut(d) => {
            proxy.set(Mode::Cut);
            tokio::time::sleep(d).await;
            proxy.set(Mode::Pass);
        }
        Fault::Flap(d) => {
            let mut rng = SmallRng::seed_from_u64(seed);
            let until = tokio::time::Instant::now() + d;
            while tokio::time::Instant::now() < until {
                proxy.set(Mode::Cut);
                tokio::time::sleep(Duration::from_millis(20 + rng.random_range(0..MAX_CUT_MS) as u64)).await;
                proxy.set(Mode::Pass);
                tokio::time::sleep(Duration::from_millis(50 + rng.random_range(0..MAX_PASS_MS) as u64)).await;
            }
        }
        Fault::Reset => {
            proxy.set(Mode::Reset);
            tokio::time::sleep(RESET_FOR).await;
            proxy.set(Mode::Pass);
        }
    }
}
