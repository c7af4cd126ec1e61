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
//! reports (its caller went away) is replaced after `probe_wait`. Any success,
//! of a probe or of a call that was already in flight, closes it.
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
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls are refused until `until`; the first call at or after it is the
    /// probe, and pushes `until` to the probe's deadline.
    Open { until: Instant },
}

/// May a call to the authority go ahead?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Call,
    /// No: the breaker is open for about this much longer.
    Refuse(Duration),
}

impl Breaker {
    /// Opens after `failures` consecutive failures (0: never); probes every
    /// `cool_down`; gives up on a silent probe after `probe_wait` (the Verify
    /// deadline).
    pub(crate) fn new(failures: u32, cool_down: Duration, probe_wait: Duration) -> Self {
        Self { failures, cool_down, probe_wait, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let mut state = self.state.lock().expect("breaker lock");
        match *state {
            State::Closed { .. } => Admit::Call,
            State::Open { until } if now >= until => {
                *state = State::Open { until: now + self.probe_wait };
                Admit::Call
            }
            State::Open { until } => Admit::Refuse(until - now),
        }
    }

    /// Records how a call that was admitted ended: `None` when the authority
    /// answered (whatever it said), or the failure's status code.
    pub(crate) fn record(&self, now: Instant, failure: Option<Code>) {
        let mut state = self.state.lock().expect("breaker lock");
        *state = match (failure.filter(|c| unreachable(*c)), *state) {
            (None, _) => State::Closed { failures: 0 },
            (Some(_), State::Closed { failures }) if self.failures == 0 || failures + 1 < self.failures => {
                State::Closed { failures: failures + 1 }
            }
            (Some(_), _) => State::Open { until: now + self.cool_down },
        };
    }

    /// Consecutive failures that open the breaker (0: never).
    pub(crate) fn threshold(&self) -> u32 {
        self.failures
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (b, t) = (Breaker::new(3, COOL, PROBE), Instant::now());
        b.record(t, Some(Code::Unavailable));
        b.record(t, Some(Code::DeadlineExceeded));
        b.record(t, None); // an answer in between: the count starts again
        b.record(t, Some(Code::Unavailable));
        b.record(t, Some(Code::Unknown));
        assert_eq!(b.admit(t), Admit::Call, "two in a row do not open it");
        b.record(t, Some(Code::ResourceExhausted));
        assert_eq!(b.admit(t + ms(10)), Admit::Refuse(ms(990)), "the third does");
    }

    #[test]
    fn answers_that_are_errors_do_not_count() {
        let (b, t) = (Breaker::new(2, COOL, PROBE), Instant::now());
        for code in [Code::PermissionDenied, Code::Unauthenticated, Code::InvalidArgument, Code::Internal] {
            b.record(t, Some(code));
            b.record(t, Some(code));
            assert_eq!(b.admit(t), Admit::Call, "{code:?} is the authority answering");
        }
    }

    #[test]
    fn one_probe_per_cool_down_and_its_answer_decides() {
        let (b, t) = (Breaker::new(1, COOL, PROBE), Instant::now());
        b.record(t, Some(Code::Unavailable));
        assert!(matches!(b.admit(t + ms(999)), Admit::Refuse(_)));
        assert_eq!(b.admit(t + COOL), Admit::Call, "the probe");
        assert!(matches!(b.admit(t + COOL), Admit::Refuse(_)), "one probe at a time");
        // The probe fails: open another cool-down from then.
        let failed = t + COOL + ms(500);
        b.record(failed, Some(Code::DeadlineExceeded));
        assert_eq!(b.admit(failed + ms(1)), Admit::Refuse(ms(999)));
        assert_eq!(b.admit(failed + COOL), Admit::Call, "the next probe");
        b.record(failed + COOL + ms(3), None);
        assert_eq!(b.admit(failed + COOL + ms(4)), Admit::Call, "closed: everyone calls");
        assert_eq!(b.admit(failed + COOL + ms(4)), Admit::Call);
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced() {
        let (b, t) = (Breaker::new(1, COOL, PROBE), Instant::now());
        b.record(t, Some(Code::Unavailable));
        assert_eq!(b.admit(t + COOL), Admit::Call, "the probe, whose caller then goes away");
        assert!(matches!(b.admit(t + COOL + PROBE - ms(1)), Admit::Refuse(_)));
        assert_eq!(b.admit(t + COOL + PROBE), Admit::Call, "another probe");
    }

    #[test]
    fn a_late_success_closes_it() {
        let (b, t) = (Breaker::new(1, COOL, PROBE), Instant::now());
        b.record(t, Some(Code::Unavailable));
        b.record(t + ms(5), None); // a call from before the outage got its answer
        assert_eq!(b.admit(t + ms(6)), Admit::Call);
    }

    #[test]
    fn zero_never_opens() {
        let (b, t) = (Breaker::new(0, COOL, PROBE), Instant::now());
        for _ in 0..100 {
            b.record(t, Some(Code::Unavailable));
        }
        assert_eq!(b.admit(t), Admit::Call);
    }
}
