//! The services' tokio runtime (authority, verifier, and the bench's echo
//! server, which stands in for the verifier): the multi-thread scheduler with
//! its LIFO slot turned off; and [`run_main`], the daemons' `main` on it.
//!
//! With the LIFO slot on, a task woken by the running task runs next. A
//! request's handler that finishes wakes its HTTP/2 connection task, which
//! then runs at once and writes that one response: a batch of replies (the
//! writer's group commit answers dozens of Revokes at once; a read of many
//! pipelined Checks spawns as many handlers) leaves in one `writev` per
//! response. Without it, woken tasks queue in order, so the handlers of a
//! batch tend to run before their connection task, which then writes their
//! responses together (on one worker always; with several, idle workers
//! steal from the queue and the order is looser). On one core (the bench,
//! `cargo xtask bench --only authority`, side by side) that took the
//! authority's `writev` calls from 0.7 to about 0.1 per Revoke, and raised
//! Verify × 64 and Revoke × 64 (figures in docs/performance.md). Oxide turns the slot
//! off in their services for another reason: a task in it cannot be stolen
//! by an idle worker (latency spikes).
//!
//! Turning it off is an unstable tokio API: `.cargo/config.toml` builds the
//! workspace with `--cfg tokio_unstable`, which opens every unstable tokio
//! API (outside semver: a tokio upgrade may change this one). A build
//! without the flag keeps the LIFO slot and works, only slower; this
//! crate's build script warns when that happens. Cargo drops the config's
//! flags when `RUSTFLAGS` or `CARGO_ENCODED_RUSTFLAGS` is set, when any
//! `target.….rustflags` applies (also from `~/.cargo/config.toml`), and
//! when building outside the workspace (`cargo install --git`).

use tokio::runtime::{Builder, Runtime};

/// The services' runtime configuration (multi-thread, every I/O and time
/// driver, LIFO slot off); callers may adjust it before building.
pub fn builder() -> Builder {
    let mut builder = Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder
}

/// The services' runtime, one worker per available CPU.
pub fn build() -> std::io::Result<Runtime> {
    builder().build()
}

/// The `main` of a Tally daemon: the services' runtime, telemetry installed
/// before `body` runs and flushed after it; an error (telemetry's or the
/// body's) goes to stderr after the binary's `name`, and the exit code says
/// whether there was one.
pub fn run_main<F, E>(name: &'static str, body: impl FnOnce() -> F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let runtime = match build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let _entered = runtime.enter();
    let telemetry = match crate::telemetry::init(name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(body());
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::sync::{Notify, oneshot};

    const HANDLERS: usize = 4;

    /// The order that matters to the servers: when one task wakes several
    /// handlers and each of them wakes a shared connection task, every
    /// handler runs before the connection task does (so it finds all their
    /// responses at once). With the LIFO slot on, the connection task runs
    /// right after the first handler.
    #[test]
    fn woken_handlers_all_run_before_the_task_they_wake() {
        let runtime = super::builder().worker_threads(1).build().expect("runtime");
        let order = runtime.block_on(async {
            let order = Arc::new(Mutex::new(Vec::new()));
            let connection = Arc::new(Notify::new());
            let conn = {
                let (order, connection) = (order.clone(), connection.clone());
                tokio::spawn(async move {
                    loop {
                        connection.notified().await;
                        let mut order = order.lock().unwrap();
                        order.push("connection".to_owned());
                        if order.iter().filter(|o| o.starts_with("handler")).count() == HANDLERS {
                            return;
                        }
                    }
                })
            };
            let waiting = Arc::new(AtomicUsize::new(0));
            let mut replies = Vec::new();
            for i in 0..HANDLERS {
                let (tx, rx) = oneshot::channel::<()>();
                replies.push(tx);
                let (order, connection, waiting) = (order.clone(), connection.clone(), waiting.clone());
                tokio::spawn(async move {
                    waiting.fetch_add(1, Ordering::SeqCst);
                    rx.await.expect("reply");
                    order.lock().unwrap().push(format!("handler {i}"));
                    connection.notify_one();
                });
            }
            while waiting.load(Ordering::SeqCst) < HANDLERS {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // The "writer": one task answers every handler.
            tokio::spawn(async move {
                for tx in replies {
                    let _ = tx.send(());
                }
            });
            tokio::time::timeout(Duration::from_secs(10), conn).await.expect("connection task ended").expect("task");
            order.lock().unwrap().clone()
        });
        let first = order.iter().position(|o| o == "connection").expect("connection ran");
        assert_eq!(
            first, HANDLERS,
            "the connection task ran between the handlers (built without --cfg tokio_unstable?): {order:?}"
        );
    }
}
