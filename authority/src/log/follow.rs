//! The follower, on a store that other replicas write (PostgreSQL): it has
//! the writer catch up with their commits ([`super::writer::Writer::follow`])
//! when the database says one happened (`NOTIFY tally`, from triggers on the
//! head row and the keys) and at a short interval besides, so a lost
//! notification (a dropped listening connection) costs one interval, never an
//! entry. Each catch-up reads the stored head: it is what the heartbeats
//! vouch for (`State::vouches`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::writer::Writer;

/// The follower's interval for a heartbeat interval of `heartbeat`: four
/// reads of the head per heartbeat, so a replica that reads the database
/// vouches on every beat; within 10 ms and 1 s.
pub(crate) fn poll(heartbeat: Duration) -> Duration {
    (heartbeat / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// The running follower.
#[derive(Debug)]
pub(crate) struct Follower {
    task: JoinHandle<()>,
}

impl Follower {
    /// Follows at every wake-up of `wakeups` and every `poll`.
    pub(crate) fn spawn(writer: Writer, wakeups: Arc<Notify>, poll: Duration) -> Self {
        Self { task: tokio::spawn(run(writer, wakeups, poll)) }
    }

    /// Stops following (at shutdown).
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(writer: Writer, wakeups: Arc<Notify>, poll: Duration) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = wakeups.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
        if writer.is_closed() {
            return;
        }
        match writer.follow().await {
            Ok(()) if failing => {
                tracing::info!("following the database again: this replica vouches for the log's head");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot read the database: this replica stops vouching for the log's head");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
