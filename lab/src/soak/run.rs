//! `tally-soak`: the whole soak, from the release build. Starts the
//! deployment and the load, samples and injects faults on schedule until the
//! time is up, then prints the totals and the judgement and fails unless
//! everything held. An interrupt (Ctrl-C, SIGTERM) or an error drops the
//! run, and with it every process it started.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
use tally_tests::Mode;
use tokio::signal::unix::{SignalKind, signal};

use super::Args;
use super::checks::{Kind, Tally};
use super::deployment::{Deployment, FAIL_CLOSED_AFTER};
use super::faults::{self, Fault, SETTLE};
use super::load::Load;
use super::pool::POOL;
use super::safety::BOUND;
use super::sample::{Sample, Sampler};
use super::summary;

/// Runs the soak; fails unless everything held.
pub fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.minutes > 0.0 && args.sample_every > 0 && args.fault_every > 0, "durations must be positive");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            result = soak(&args) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C): every process the soak started was killed")),
            _ = term.recv() => Err(anyhow!("terminated (SIGTERM): every process the soak started was killed")),
        }
    })
}

async fn soak(args: &Args) -> anyhow::Result<()> {
    let length = Duration::from_secs_f64(args.minutes * 60.0);
    let out = args.out.clone().unwrap_or_else(super::default_out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut csv = csv::Writer::from_path(&out).with_context(|| format!("creating {}", out.display()))?;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);

    println!(
        "soak: {:.1} min of load at {} checks/s with a fault every {} s, sampled every {} s (seed {seed}); samples in {}",
        args.minutes,
        args.rate,
        args.fault_every,
        args.sample_every,
        out.display()
    );
    let setup = Instant::now();
    let mut d = Deployment::start(&args.rust_log).await?;
    let (mut load, safety) = Load::start(&d, args.rate, seed).await?;
    println!(
        "soak: authority on {}, verifier eu on {} (direct), us on {} (through the fault proxy {}); \
         {POOL} families minted; set up in {:.1} s",
        d.authority.addr(),
        d.eu.addr(),
        d.us.addr(),
        d.proxy.addr(),
        setup.elapsed().as_secs_f64()
    );
    println!("{}", Sample::table_header());

    let started = Instant::now();
    let end = tokio::time::Instant::from_std(started + length);
    let every = Duration::from_secs(args.fault_every);
    let mut next_fault = tokio::time::Instant::from_std(started) + every;
    let mut ticks = tokio::time::interval(Duration::from_secs(args.sample_every));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sampler = Sampler::new(started);
    let mut samples = Vec::new();
    let mut calm_from = started;
    let mut faults_done: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut started_at = vec![Duration::ZERO];
    let mut link: Option<tokio::task::JoinHandle<()>> = None;
    let mut n = 0u64;
    loop {
        let last_one = tokio::select! {
            _ = ticks.tick() => false,
            _ = tokio::time::sleep_until(end) => true,
            _ = tokio::time::sleep_until(next_fault) => {
                let fault = faults::nth(n, started.elapsed() < length / 2);
                n += 1;
                next_fault += every;
                let Some(fault) = fault else {
                    println!("{:>6.0}  no fault (a restart's slot; restarts are over)", started.elapsed().as_secs_f64());
                    continue;
                };
                *faults_done.entry(fault.name()).or_default() += 1;
                calm_from = Instant::now() + fault.length() + SETTLE;
                println!("{:>6.0}  fault: {}", started.elapsed().as_secs_f64(), fault.describe());
                if let Fault::Restart { down } = fault {
                    d.restart_authority(down).await?;
                    started_at.push(started.elapsed());
                } else {
                    if let Some(previous) = link.take() {
                        previous.await.context("a link fault task")?;
                    }
                    link = Some(tokio::spawn(faults::on_link(d.proxy.clone(), fault, seed ^ n)));
                }
                continue;
            }
        };
        d.ensure_running()?;
        let total: u64 = faults_done.values().sum();
        let calm = Instant::now() >= calm_from;
        let s = sampler.take(&mut d, &load, calm, total, started_at.len() as u64 - 1).await;
        println!("{}", s.table_row());
        csv.serialize(s.csv_row())?;
        csv.flush()?;
        samples.push(s);
        if last_one {
            break;
        }
    }

    if let Some(previous) = link.take() {
        previous.await.context("a link fault task")?;
    }
    d.proxy.set(Mode::Pass);
    let stranded = load.stop().await;
    d.ensure_running()?;
    let panics = d.panics();

    println!();
    let cycle = faults::cycle(every);
    let rows = summary::rows(&samples, length, cycle, &started_at);
    println!("{}", summary::rule(length, cycle, args.tolerance, &started_at));
    print!("{}", summary::table(&rows, args.tolerance));
    for line in summary::incarnations(&samples) {
        println!("{line}");
    }
    println!();
    let tally = std::mem::take(&mut *load.checks.tally.lock().unwrap_or_else(|p| p.into_inner()));
    let answered = load.checks.done.load(Ordering::Relaxed);
    let offered = f64::from(args.rate) * length.as_secs_f64();
    let shed = load.checks.shed.load(Ordering::Relaxed);
    let stalls = load.checks.stalls.load(Ordering::Relaxed);
    let errors = print_totals(&tally, &load, answered, offered, length, stranded);
    let faults: Vec<String> = faults_done.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "faults: {} ({}); authority restarts: {}",
        faults_done.values().sum::<u64>(),
        faults.join(", "),
        started_at.len() - 1
    );
    let (violations, described) = safety.violations();
    println!(
        "safety (no allow after revoke-ack + {BOUND:?}: threshold {FAIL_CLOSED_AFTER:?} + heartbeat + slack): {violations} violations"
    );
    described.iter().for_each(|v| println!("  {v}"));
    println!("wrong answers: {}", tally.wrong);
    tally.described.iter().for_each(|v| println!("  {v}"));
    println!("panics: {}", if panics.is_empty() { "none".to_owned() } else { panics.len().to_string() });
    panics.iter().take(10).for_each(|p| println!("  {p}"));
    println!("samples: {}", out.display());

    let mut failed = Vec::new();
    for r in rows.iter().filter(|r| r.judged && !r.within(args.tolerance)) {
        failed.push(format!("{} {} grew {:+.1} %", r.process, r.what, r.growth()));
    }
    if violations > 0 {
        failed.push(format!("{violations} safety violations"));
    }
    if tally.wrong > 0 {
        failed.push(format!("{} wrong answers", tally.wrong));
    }
    if !panics.is_empty() {
        failed.push(format!("{} panics", panics.len()));
    }
    if (answered as f64) < offered / 2.0 {
        failed.push(format!("the load generator answered {answered} of {offered:.0} offered checks"));
    }
    if stalls > 0 || shed > 0 || errors > 0 {
        println!(
            "note: {stalls} dispatcher stalls over 1 s, {shed} checks shed, {errors} errors: see above (not failures by themselves)"
        );
    }
    if !failed.is_empty() {
        bail!("soak failed: {}", failed.join("; "));
    }
    println!("soak passed");
    Ok(())
}

/// Prints the load's totals; returns the number of errors (RPC failures and
/// timeouts other than garbage's expected INVALID_ARGUMENT).
fn print_totals(tally: &Tally, load: &Load, answered: u64, offered: f64, length: Duration, stranded: usize) -> u64 {
    let c = &load.checks;
    println!(
        "checks: {offered:.0} offered, {answered} answered ({:.0}/s), {} shed, {} dispatcher stalls over 1 s{}",
        answered as f64 / length.as_secs_f64(),
        c.shed.load(Ordering::Relaxed),
        c.stalls.load(Ordering::Relaxed),
        if stranded > 0 { format!(", {stranded} still in flight at the end") } else { String::new() },
    );
    let mut by_kind: BTreeMap<Kind, Vec<(&str, u64)>> = BTreeMap::new();
    for ((kind, label), n) in &tally.counts {
        by_kind.entry(*kind).or_default().push((label.as_str(), *n));
    }
    let mut errors = 0;
    for (kind, mut labels) in by_kind {
        labels.sort_by_key(|l| std::cmp::Reverse(l.1));
        let total: u64 = labels.iter().map(|(_, n)| n).sum();
        let parts: Vec<String> = labels.iter().map(|(l, n)| format!("{l} {n}")).collect();
        println!("  {:<16} {total:>9}: {}", kind.name(), parts.join(", "));
        errors += labels
            .iter()
            .filter(|(l, _)| l.starts_with("error") && !(kind == Kind::Garbage && *l == "error InvalidArgument"))
            .map(|(_, n)| n)
            .sum::<u64>();
    }
    let o = &load.ops;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "authority calls: {} mints ({POOL} initial), {} failed; {} revocations acknowledged ({} by token, the rest \
         by family), {} failed or timed out, {} awaiting a retry at the end; {} key rotations, {} failed",
        get(&o.mints),
        get(&o.mint_errors),
        get(&o.revocations),
        get(&o.revocations_by_token),
        get(&o.revoke_errors),
        load.pool.unacked(),
        get(&o.rotations),
        get(&o.rotate_errors),
    );
    println!("check errors (RPC failures and timeouts; garbage's INVALID_ARGUMENT excepted): {errors}");
    errors
}
