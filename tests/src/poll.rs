//! Polling with a deadline, in place of fixed sleeps: a condition is retried
//! every [`POLL_INTERVAL`] until it holds or the deadline passes.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;

/// Default deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Pause between two attempts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Retries `attempt` every [`POLL_INTERVAL`] until it returns `Ok`, and
/// returns that value. At `deadline` fails with the last error. An attempt
/// still running at the deadline is abandoned.
pub async fn try_eventually<T, E, F, Fut>(deadline: Duration, mut attempt: F) -> anyhow::Result<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    let mut last = String::from("no attempt finished");
    loop {
        match tokio::time::timeout_at(give_up, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => break,
        }
        if tokio::time::Instant::now() + POLL_INTERVAL > give_up {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(anyhow!("condition not met within {deadline:?}; last attempt: {last}"))
}

/// [`try_eventually`] that panics on timeout.
#[track_caller]
pub fn eventually<T, E, F, Fut>(deadline: Duration, attempt: F) -> impl Future<Output = T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let caller = std::panic::Location::caller();
    async move {
        match try_eventually(deadline, attempt).await {
            Ok(value) => value,
            Err(e) => panic!("eventually (at {caller}): {e}"),
        }
    }
}
