//! A flapping link during a revocation burst: the proxy between verifier and
//! authority alternates cut (connections closed, new ones refused) and pass
//! while 300 revocations are acknowledged. The verifier must apply every one
//! exactly once and in order (no gap, so no reset; no duplicate effect; its
//! applied seq never goes back), and never allow a revoked family past the
//! bound.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tally_proto::v1::Reason;
use tally_tests::{
    Authority, AuthorityOptions, CheckLoad, History, Mode, Proxy, Tracked, Verifier, VerifierOptions, eventually,
    metric, scrape,
};
use tokio::task::JoinSet;

const THRESHOLD: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(200);
const SLACK: Duration = Duration::from_millis(500);
const BOUND: Duration = THRESHOLD.saturating_add(HEARTBEAT).saturating_add(SLACK);
/// Revocations in the burst.
const REVOCATIONS: usize = 300;
/// The burst is cut into this many slices, each ended by a cut of the link.
const SLICES: usize = 10;
/// Longest cut and longest pass of one flap (each drawn at random up to it).
const MAX_CUT_MS: u64 = 250;
const MAX_PASS_MS: u64 = 300;
/// Time to catch up once the link stays up (backoff is at most 5 s).
const CATCH_UP: Duration = Duration::from_secs(15);

/// A small xorshift generator: the flaps differ per run; the seed is printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_link_during_revocation_burst() {
    let authority =
        Authority::start_with(AuthorityOptions { heartbeat: HEARTBEAT, ..AuthorityOptions::default() }).await;
    let proxy = Arc::new(Proxy::start(authority.addr()).await);
    let verifier_token = authority.system_token("verifier", &[]).await;
    let options = VerifierOptions {
        region: "eu".into(),
        fail_closed_after: THRESHOLD,
        args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
        ..VerifierOptions::default()
    };
    let eu = Verifier::start(&proxy.url(), &verifier_token, options).await;
    let metrics = eu.metrics_addr().await.unwrap();
    eu.wait_synced().await;

    authority.create_org("acme").await;
    let keep: Vec<Tracked> = vec![authority.mint("acme", &[]).await.into(), authority.mint("acme", &[]).await.into()];
    let mut minting = JoinSet::new();
    for _ in 0..4 {
        let (mut client, operator) = (authority.client(), authority.bootstrap().to_owned());
        minting.spawn(async move {
            let mut out = Vec::new();
            for _ in 0..REVOCATIONS / 4 {
                let req = tally_proto::v1::MintRequest { org: "acme".into(), ..Default::default() };
                out.push(Tracked::from(client.mint(tally_tests::bearer(req, &operator)).await.unwrap().into_inner()));
            }
            out
        });
    }
    let doomed: Vec<Tracked> = minting.join_all().await.into_iter().flatten().collect();
    assert_eq!(doomed.len(), REVOCATIONS);

    let history = History::new();
    // Keep tokens twice in the rotation: they are the cache hits that matter.
    let rotation: Vec<Tracked> = keep.iter().chain(&keep).chain(&doomed).cloned().collect();
    let tokens = Arc::new(Mutex::new(rotation));
    let loads = [
        CheckLoad::start(history.clone(), eu.client(), "eu", tokens.clone()),
        CheckLoad::start(history.clone(), eu.client(), "eu", tokens.clone()),
    ];

    // The applied seq, sampled all along: it must never go back (a reset sets it to 0).
    let stop = Arc::new(AtomicBool::new(false));
    let backwards = Arc::new(Mutex::new(Vec::<String>::new()));
    let sampler = {
        let (client, stop, backwards) = (eu.client(), stop.clone(), backwards.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = client.clone().status(tally_proto::v1::StatusRequest {}).await {
                    let s = s.into_inner();
                    if s.applied_seq < last || s.resets != 0 {
                        backwards.lock().unwrap().push(format!("applied {} after {last}: {s:?}", s.applied_seq));
                    }
                    last = s.applied_seq;
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };

    // The flapping link.
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let cuts = Arc::new(AtomicU64::new(0));
    let flapper = {
        let (proxy, stop, cuts) = (proxy.clone(), stop.clone(), cuts.clone());
        tokio::spawn(async move {
            let mut rng = Rng(seed);
            while !stop.load(Ordering::Relaxed) {
                proxy.set(Mode::Cut);
                cuts.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20 + rng.below(MAX_CUT_MS))).await;
                proxy.set(Mode::Pass);
                tokio::time::sleep(Duration::from_millis(50 + rng.below(MAX_PASS_MS))).await;
            }
            proxy.set(Mode::Pass);
        })
    };

    // The burst is paced by the flapper, not by the clock: each slice of
    // revocations waits for the next cut, so however fast the authority
    // acknowledges, the link flaps at least SLICES times during the burst.
    let mut seqs = Vec::new();
    for slice in doomed.chunks(REVOCATIONS / SLICES) {
        let before = cuts.load(Ordering::Relaxed);
        for t in slice {
            seqs.push(history.revoke(authority.client(), authority.bootstrap(), &t.family).await.expect("Revoke"));
        }
        let next_cut = async {
            while cuts.load(Ordering::Relaxed) == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        // A cut is due within MAX_PASS_MS; a flapper that stopped (panicked) fails here, never hangs.
        tokio::time::timeout(Duration::from_secs(5), next_cut).await.expect("the flapper cuts the link again");
    }
    let burst_end = history.now();
    // The authority gave the burst contiguous seqs 1..=300.
    assert_eq!(seqs, (1..=REVOCATIONS as u64).collect::<Vec<_>>());
    let head = *seqs.last().unwrap();
    // Flap on a little past the burst, then let the link be.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    flapper.await.unwrap();
    let samples = sampler.await.unwrap();

    let status = eventually(CATCH_UP, || async {
        let s = eu.status().await;
        if s.applied_seq == head && s.synced && !s.fail_closed { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert_eq!(status.resets, 0, "no gap, so no reset: {status:?}");
    let backwards = backwards.lock().unwrap().clone();
    assert!(backwards.is_empty(), "the applied seq went back or a reset happened: {backwards:#?}");
    // Each revocation took effect exactly once: a duplicate or a replay
    // after a reset would count again, a skipped one would not count.
    let text = scrape(metrics).await.unwrap();
    assert_eq!(metric(&text, "tally_verifier_revocations_applied_total"), Some(REVOCATIONS as f64));
    assert_eq!(metric(&text, "tally_verifier_resets_total"), Some(0.0));

    // Every revoked family is denied, every kept one still allowed from the cache.
    for t in &doomed {
        let r = history.check(eu.client(), "eu", t).await;
        let a = r.answer.as_ref().expect("Check");
        assert!(!a.allowed && a.reason() == Reason::Revoked, "{r:?}");
    }
    for t in &keep {
        history.until_cached(&eu.client(), "eu", t).await;
    }

    let mut checks = 0;
    for load in loads {
        checks += load.stop().await;
    }
    let cuts = cuts.load(Ordering::Relaxed);
    eprintln!(
        "flapping (seed {seed}): {cuts} cuts, {} connections, burst of {REVOCATIONS} in {burst_end:?}, \
         {samples} status samples, {checks} load checks; {}",
        proxy.accepted(),
        history.summary()
    );
    assert!(proxy.accepted() >= 3, "the verifier reconnected only {} times", proxy.accepted());
    history.assert_safe(BOUND, &HashSet::new());
}
