//! A circuit breaker on Verify calls to the authority.
//!
//! When the authority is out of reach (down, partitioned, a black hole that
//! answers nothing), every check that needs it would wait the whole Verify
//! deadline before being denied, holding its request, its call and its
//! HTTP/2 streams all that time: the caller sees seconds of latency for an
//! answer that is "authority unavailable" anyway, and the verifier's memory
//! swells with parked calls for as long as the outage lasts.
//!
//! So after `failures` Verify calls in a row fail for want of the authority
//! (unavailable, timed out, overloaded, cut off), the breaker opens: checks
//! that need the authority are denied at once with the same reason. Every
//! `cool_down` one call is let through as a probe; its success closes the
//! breaker, its failure keeps it open another `cool_down`. A probe that never
//! reports is replaced after `probe_wait`. Any success, of a probe or of a
//! call that was already in flight, closes it; while it is open, only the
//! current probe's failure counts (calls sent before it opened, failing one
//! by one, neither delay the next probe nor start a second one).
//!
//! The verifier runs each Verify call in a task of its own, so a call whose
//! check was dropped (its caller's deadline, Envoy's ext_authz timeout) still
//! runs to its own deadline and reports here: the first callers of an outage
//! wait out `--authority-timeout` or their own deadline, the later ones do not.
//!
//! The revocation stream is a second witness: when it has been silent past
//! the fail-closed threshold, the verifier trips the breaker (`trip`) without
//! waiting for Verify calls to fail: the next call is a probe and the others
//! are denied, as after failures. Without it, the moment the cache is dropped
//! every check would become a Verify call into the silence, and up to
//! `--max-authority-calls` of them would be parked until their deadline.
//! When the stream is heard from again, `reset` closes it.
//!
//! Only availability is at stake here, never safety: an open breaker denies,
//! and a closed one only lets the authority be asked. Time is passed in, so
//! the rule is tested without waiting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Code;

/// The breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Consecutive failures that open it (0: never opens).
    failures: u32,
    cool_down: Duration,
    probe_wait: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Probes handed out so far (numbers never repeat, across openings too).
    probes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls are refused until `until`; the first call at or after it is the
    /// next probe, and pushes `until` to its deadline. `probe`: the current
    /// probe's number (0: none yet).
    Open { until: Instant, probe: u64 },
}

/// May a call to the authority go ahead?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Yes; report how it ended with this ticket.
    Call(Ticket),
    /// No: the breaker is open for about this much longer.
    Refuse(Duration),
}

/// Which call is reporting: an ordinary one, or the probe of that number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(Option<u64>);

impl Breaker {
    /// Opens after `failures` consecutive failures (0: never); probes every
    /// `cool_down`; gives up on a silent probe after `probe_wait` (the Verify
    /// deadline).
    pub(crate) fn new(failures: u32, cool_down: Duration, probe_wait: Duration) -> Self {
        let inner = Inner { state: State::Closed { failures: 0 }, probes: 0 };
        Self { failures, cool_down, probe_wait, inner: Mutex::new(inner) }
    }

    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let mut inner = self.inner.lock().expect("breaker lock");
        match inner.state {
            State::Closed { .. } => Admit::Call(Ticket(None)),
            State::Open { until, .. } if now >= until => {
                inner.probes += 1;
                inner.state = State::Open { until: now + self.probe_wait, probe: inner.probes };
                Admit::Call(Ticket(Some(inner.probes)))
            }
            State::Open { until, .. } => Admit::Refuse(until - now),
        }
    }

    /// Opens it now with a probe due at once (the stream went silent past
    /// the threshold); nothing when already open or when it never opens.
    pub(crate) fn trip(&self, now: Instant) {
        let mut inner = self.inner.lock().expect("breaker lock");
        if self.failures > 0 && matches!(inner.state, State::Closed { .. }) {
            inner.state = State::Open { until: now, probe: 0 };
        }
    }

    /// Closes it (the stream is heard from again: the authority is reachable).
    pub(crate) fn reset(&self) {
        self.inner.lock().expect("breaker lock").state = State::Closed { failures: 0 };
    }

    /// Records how an admitted call ended: `None` when the authority answered
    /// (whatever it said), or the failure's status code.
    pub(crate) fn record(&self, now: Instant, ticket: Ticket, failure: Option<Code>) {
        let mut inner = self.inner.lock().expect("breaker lock");
        inner.state = match (failure.filter(|c| unreachable(*c)), inner.state) {
            (None, _) => State::Closed { failures: 0 },
            (Some(_), State::Closed { failures }) if self.failures == 0 || failures + 1 < self.failures => {
                State::Closed { failures: failures.saturating_add(1) }
            }
            (Some(_), State::Closed { .. }) => State::Open { until: now + self.cool_down, probe: 0 },
            // Open: the current probe failed; wait another cool-down.
            (Some(_), State::Open { probe, .. }) if ticket == Ticket(Some(probe)) => {
                State::Open { until: now + self.cool_down, probe }
            }
            // Open: a call from before, or a replaced probe; nothing new.
            (Some(_), open) => open,
        };
    }
}

/// The codes that say the authority could not be reached or would not take
/// the call; any other status is an answer, and shows it reachable.
fn unreachable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled | Code::Unknown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(1);
    const PROBE: Duration = Duration::from_secs(2);
    const CALL: Ticket = Ticket(None);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn probe(b: &Breaker, now: Instant) -> Ticket {
        match b.admit(now) {
            Admit::Call(t @ Ticket(Some(_))) => t,
            other => panic!("expected a probe, got {other:?}"),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (b, t) = (Breaker::new(3, COOL, PROBE), Instant::now());
        b.record(t, CALL, Some(Code::Unavailable));
        b.record(t, CALL, Some(Code::DeadlineExceeded));
        b.record(t, CALL, None); // an answer in between: the count starts again
        b.record(t, CALL, Some(Code::Unavailable));
        b.record(t, CALL, Some(Code::Unknown));
        assert_eq!(b.admit(t), Admit::Call(CALL), "two in a row do not open it");
        b.record(t, CALL, Some(Code::ResourceExhausted));
        assert_eq!(b.admit(t + ms(10)), Admit::Refuse(ms(990)), "the third does");
    }

    #[test]
    fn answers_that_are_errors_do_not_count() {
        let (b, t) = (Breaker::new(2, COOL, PROBE), Instant::now());
        for code in [Code::PermissionDenied, Code::Unauthenticated, Code::InvalidArgument, Code::Internal] {
            b.record(t, CALL, Some(code));
            b.record(t, CALL, Some(code));
            assert_eq!(b.admit(t), Admit::Call(CALL), "{code:?} is the authority answering");
        }
    }

    #[test]
    fn one_probe_per_cool_down_and_its_answer_decides() {
        let (b, t) = (Breaker::new(1, COOL, PROBE), Instant::now());
        b.record(t, CALL, Some(Code::Unavailable));
        assert!(matches!(b.admit(t + ms(999)), Admit::Refuse(_)));
        let first = probe(&b, t + COOL);
        assert!(matches!(b.admit(t + COOL), Admit::Refuse(_)), "one probe at a time");
        // The probe fails: open another cool-down from then.
        let failed = t + COOL + ms(500);
        b.record(failed, first, Some(Code::DeadlineExceeded));
        assert_eq!(b.admit(failed + ms(1)), Admit::Refuse(ms(999)));
        let second = probe(&b, failed + COOL);
        assert_ne!(first, second);
        b.record(failed + COOL + ms(3), second, None);
        assert_eq!(b.admit(failed + COOL + ms(4)), Admit::Call(CALL), "closed: everyone calls");
        assert_eq!(b.admit(failed + COOL + ms(4)), Admit::Call(CALL));
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced() {
        let (b, t) = (Breaker::new(1, COOL, PROBE), Instant::now());
        b.record(t, CALL, Some(Code::Unavailable));
        let lost = probe(&b, t + COOL);
        assert!(matches!(b.admit(t + COOL + PROBE - ms(1)), Admit::Refuse(_)));
        let next = probe(&b, t + COOL + PROBE);
        // The replaced probe fails late: the current one is still awaited.
        b.record(t + COOL + PROBE + ms(10), lost, Some(Code::DeadlineExceeded));
        assert_eq!(b.admit(t + COOL + PROBE + ms(20)), Admit::Refuse(PROBE - ms(20)));
        b.record(t + COOL + PROBE + ms(30), next, Some(Code::Unavailable));
        assert_eq!(b.admit(t + COOL + PROBE + ms(40)), Admit::Refuse(COOL - ms(10)));
    }

    #[test]
    fn calls_from_before_it_opened_do_not_move_the_probe() {
        let (b, t) = (Breaker::new(1, COOL, PROBE), Instant::now());
        b.record(t, CALL, Some(Code::Unavailable));
        // Calls admitted before it opened keep failing, one by one.
        for i in 1..=9 {
            b.record(t + ms(100 * i), CALL, Some(Code::DeadlineExceeded));
        }
        assert_eq!(b.admit(t + ms(950)), Admit::Refuse(ms(50)), "the probe is still due at the cool-down");
        let p = probe(&b, t + COOL);
        b.record(t + COOL + ms(1), CALL, Some(Code::DeadlineExceeded));
        assert!(matches!(b.admit(t + COOL + ms(2)), Admit::Refuse(_)), "no second probe");
        b.record(t + COOL + ms(5), p, None);
        assert_eq!(b.admit(t + COOL + ms(6)), Admit::Call(CALL));
    }

    #[test]
    fn tripped_by_the_stream_it_probes_at_once_and_reset_closes_it() {
        let (b, t) = (Breaker::new(5, COOL, PROBE), Instant::now());
        b.trip(t);
        let p = probe(&b, t);
        assert!(matches!(b.admit(t + ms(1)), Admit::Refuse(_)), "the others wait for the probe");
        b.record(t + ms(5), p, Some(Code::DeadlineExceeded));
        assert_eq!(b.admit(t + ms(6)), Admit::Refuse(COOL - ms(1)));
        b.trip(t + ms(7)); // already open: no new probe
        assert!(matches!(b.admit(t + ms(8)), Admit::Refuse(_)));
        b.reset();
        assert_eq!(b.admit(t + ms(9)), Admit::Call(CALL));
        // Off: tripping does nothing.
        let off = Breaker::new(0, COOL, PROBE);
        off.trip(t);
        assert_eq!(off.admit(t), Admit::Call(CALL));
    }

    #[test]
    fn probe_numbers_never_repeat() {
        let (b, t) = (Breaker::new(1, COOL, PROBE), Instant::now());
        b.record(t, CALL, Some(Code::Unavailable));
        let old = probe(&b, t + COOL);
        b.record(t + COOL + ms(1), CALL, None); // closed by another call's answer
        b.record(t + COOL + ms(2), CALL, Some(Code::Unavailable)); // and open again
        let new = probe(&b, t + 2 * COOL + ms(2));
        assert_ne!(old, new);
        // The old probe's late failure is not the current probe's.
        b.record(t + 2 * COOL + ms(3), old, Some(Code::DeadlineExceeded));
        // Counted, it would have allowed another probe a cool-down after it.
        assert!(matches!(b.admit(t + 3 * COOL + ms(10)), Admit::Refuse(_)), "still awaiting the new probe");
        assert!(matches!(b.admit(t + 2 * COOL + ms(2) + PROBE), Admit::Call(_)), "at the new probe's deadline");
    }

    #[test]
    fn a_late_success_closes_it() {
        let (b, t) = (Breaker::new(1, COOL, PROBE), Instant::now());
        b.record(t, CALL, Some(Code::Unavailable));
        b.record(t + ms(5), CALL, None); // a call from before the outage got its answer
        assert_eq!(b.admit(t + ms(6)), Admit::Call(CALL));
    }

    #[test]
    fn zero_never_opens() {
        let (b, t) = (Breaker::new(0, COOL, PROBE), Instant::now());
        for _ in 0..100 {
            b.record(t, CALL, Some(Code::Unavailable));
        }
        assert_eq!(b.admit(t), Admit::Call(CALL));
    }
}
