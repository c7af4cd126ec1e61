//! The metrics port under a slowloris attack, against the real binaries: the
//! `--metrics-listen` port of an authority and of a verifier each get many
//! times the server's connection cap in connections that send nothing or a
//! request head that never ends. The server's open file descriptors stay
//! within the cap plus a small margin throughout, the server closes every
//! attacker connection by itself, and afterwards a scrape works and the
//! service's gRPC still serves. Nothing is timed: the deadlines only bound
//! "it eventually happens".

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tally_tests::{
    Authority, AuthorityOptions, DEADLINE, POLL_INTERVAL, Verifier, VerifierOptions, eventually, metric, raw, scrape,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Attacker connections per port: many times the server's cap.
const ATTACKERS: usize = 300;
/// The metrics server's connection cap (`tally_service::metrics::MAX_CONNECTIONS`),
/// restated here so that this test also builds, and fails, against a server
/// that has no such constant.
const SERVER_CAP: usize = 32;
/// Descriptors the server may hold beyond its baseline and the cap while
/// attacked: a connection accepted past the cap in the moment before it is
/// closed, and whatever the service opens on its own meanwhile (SQLite's
/// files, a gRPC connection). Far below the attack's `ATTACKERS`.
const MARGIN: usize = 16;
/// How long the server may take to close every attacker connection by itself.
/// Generous: the server's own deadlines are seconds, and this is "it
/// eventually happens" on a shared machine, not a measure of speed.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);
/// The start of a request head that never ends: no blank line ever follows.
const PARTIAL_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: tally\r\nX-Slow: ";
/// What makes the binaries serve metrics on a loopback port of their choosing.
const METRICS_ARGS: [&str; 2] = ["--metrics-listen", "127.0.0.1:0"];
/// What `serve` prints with the metrics address.
const METRICS: &str = "metrics on ";

/// Entries of `/proc/PID/fd`: the process's open file descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap_or_else(|e| panic!("reading /proc/{pid}/fd: {e}")).count()
}

/// This test process's soft limit on open files (`ulimit -n`), from `/proc/self/limits`.
fn own_fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Fails early, and says why, when this process could not even open the
/// attack's sockets (two tests attack at once, each next to its harness).
fn assert_room_for_the_attack() {
    let need = (2 * ATTACKERS + 512) as u64;
    if let Some(limit) = own_fd_limit() {
        assert!(limit >= need, "ulimit -n is {limit}; this test opens about {need} descriptors: raise it");
    }
}

/// Attacks the metrics endpoint at `addr` of the process `pid` (`name` in
/// messages), then checks that it serves a scrape that holds `sample`.
async fn attack(name: &str, addr: SocketAddr, pid: u32, sample: &str) {
    let baseline = open_fds(pid);
    let bound = baseline + SERVER_CAP + MARGIN;
    let mut peak = baseline;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut attackers = JoinSet::new();
    for i in 0..ATTACKERS {
        let mut conn =
            TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("{name}: attacker {i} connecting: {e}"));
        if i % 2 == 1 {
            // Ignored: a server may already have closed a connection past its cap.
            let _ = conn.write_all(PARTIAL_HEAD).await;
        }
        let closed = closed.clone();
        attackers.spawn(async move {
            // Whatever the server writes (an error response, or nothing), the
            // connection counts as closed at end of file or reset.
            let mut buf = [0u8; 1024];
            while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            closed.fetch_add(1, Ordering::SeqCst);
        });
        peak = peak.max(open_fds(pid));
    }

    // The attackers never finish their requests; the server must close each
    // of them by itself. Its descriptors are sampled all along and may never
    // pass the bound.
    let give_up = Instant::now() + CLOSE_DEADLINE;
    loop {
        let fds = open_fds(pid);
        peak = peak.max(fds);
        let done = closed.load(Ordering::SeqCst);
        assert!(
            peak <= bound,
            "{name}: {peak} open descriptors under attack, bound {bound} (baseline {baseline} + cap {SERVER_CAP} + \
             margin {MARGIN}); the server had closed {done} of {ATTACKERS} attacker connections"
        );
        if done == ATTACKERS {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "{name}: the server closed only {done} of {ATTACKERS} idle attacker connections within {CLOSE_DEADLINE:?} \
             ({fds} open descriptors, baseline {baseline})"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    eprintln!("{name}: {baseline} descriptors before the attack, at most {peak} during it ({ATTACKERS} connections)");

    // No connection's descriptor lingers once its attacker is gone.
    eventually(DEADLINE, || async {
        let fds = open_fds(pid);
        if fds <= baseline + MARGIN { Ok(()) } else { Err(format!("{fds} open descriptors, baseline {baseline}")) }
    })
    .await;

    // A normal scrape works again.
    let text = scrape(addr).await.unwrap_or_else(|e| panic!("{name}: scraping after the attack: {e:#}"));
    assert!(metric(&text, sample).is_some(), "{name}: no {sample} in the scrape after the attack:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_metrics_port_stays_within_its_cap_under_slowloris_and_serves_after() {
    assert_room_for_the_attack();
    let serve_args = METRICS_ARGS.iter().map(|a| a.to_string()).collect();
    let mut authority = Authority::start_with(AuthorityOptions { serve_args, ..AuthorityOptions::default() }).await;
    let line = authority.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await.unwrap();
    let metrics: SocketAddr = line[METRICS.len()..].trim().parse().unwrap();
    authority.create_org("acme").await;

    attack("authority", metrics, authority.pid(), "tally_authority_mint_total").await;

    // gRPC was never touched by the attack: health and a Mint are answered.
    let channel = raw::channel(authority.addr()).await.unwrap();
    raw::assert_alive(authority.process(), &channel, "tally.v1.Authority").await.unwrap();
    let minted = authority.mint("acme", &[]).await;
    assert!(!minted.token.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_metrics_port_stays_within_its_cap_under_slowloris_and_serves_after() {
    assert_room_for_the_attack();
    let authority = Authority::start().await;
    authority.create_org("acme").await;
    let token = authority.system_token("verifier", &[]).await;
    let args = METRICS_ARGS.iter().map(|a| a.to_string()).collect();
    let mut verifier = Verifier::start(&authority.url(), &token, VerifierOptions { args, ..Default::default() }).await;
    let metrics = verifier.metrics_addr().await.unwrap();
    verifier.wait_synced().await;

    attack("verifier", metrics, verifier.pid(), "tally_verifier_memo_hits_total").await;

    // gRPC was never touched by the attack: health, sync and a Check still work.
    let channel = raw::channel(verifier.addr()).await.unwrap();
    raw::assert_alive(verifier.process(), &channel, "tally.v1.Verifier").await.unwrap();
    verifier.wait_synced().await;
    let minted = authority.mint("acme", &[]).await;
    let answer = verifier.check(&minted.token, "read").await;
    assert!(answer.allowed, "{answer:?}");
}
