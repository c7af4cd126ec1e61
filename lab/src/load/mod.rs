//! The load generator, a process of its own (`tally-load --spec FILE`) so
//! it can be pinned to its own core and its CPU time counted apart from the
//! servers'. It reads a [`Spec`], runs it on one thread, and prints the
//! [`Outcome`] as JSON on stdout. [`launch`] is the runner's side.

mod client;
mod drive;
mod spec;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};

use self::client::Channel;
pub(crate) use self::spec::{Mode, Outcome, Spec, Workload};

/// `tally-load`'s flags.
#[derive(Debug, clap::Parser)]
#[command(name = "tally-load", about = "The bench's load generator: runs one spec, prints its outcome as JSON")]
pub struct Args {
    /// The run to do, as JSON.
    #[arg(long)]
    spec: PathBuf,
}

/// Runs one spec and prints its outcome.
pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.spec).with_context(|| format!("reading {}", args.spec.display()))?;
    let spec: Spec = serde_json::from_str(&text).context("parsing the load spec")?;
    // One thread: the generator's whole cost lands on the core it is pinned to.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&runtime, drive_spec(&spec))?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

async fn drive_spec(spec: &Spec) -> anyhow::Result<Outcome> {
    ensure!(spec.connections > 0, "at least one connection");
    // Test data first, outside the timed part.
    let producer = workload::producer(&spec.workload, spec.seed)?;
    let mut channels = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        channels.push(Channel::connect(spec.target, &spec.method, spec.bearer.as_deref()).await?);
    }
    let decode_check = spec.method.ends_with("/Check");
    let run = drive::Run::new(producer, decode_check, spec.watch_pids.clone());
    let ms = Duration::from_millis;
    let window_s = match spec.mode {
        Mode::Closed { concurrency, warmup_ms, duration_ms, limit } => {
            drive::closed(&channels, &run, concurrency, ms(warmup_ms), ms(duration_ms), limit).await
        }
        Mode::Open { rate, warmup_ms, duration_ms } => {
            drive::open(&channels, &run, rate, ms(warmup_ms), ms(duration_ms)).await
        }
    };
    let outcome = run.borrow_mut().finish(window_s);
    Ok(outcome)
}

/// Runs `spec` in a load generator process (started by the runner, so
/// pinned like it) and returns what it measured.
pub(crate) async fn launch(dir: &Path, spec: &Spec) -> anyhow::Result<Outcome> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!("load-{}.json", RUNS.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, serde_json::to_vec(spec)?)?;
    let output = tokio::process::Command::new(crate::own_binary("tally-load"))
        .arg("--spec")
        .arg(&path)
        .kill_on_drop(true)
        .output()
        .await
        .context("running the load generator")?;
    ensure!(
        output.status.success(),
        "load generator failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("parsing the load generator's outcome")
}
