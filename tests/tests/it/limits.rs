//! The authority under overload, with real processes: calls past the
//! in-flight cap are shed with UNAVAILABLE at once (none queue); a call past
//! the per-RPC deadline gets DEADLINE_EXCEEDED while a stream outlives that
//! deadline; Subscribe past the subscriber cap is refused with
//! RESOURCE_EXHAUSTED while the admitted streams go on; a verifier refused
//! at the cap takes the slot when it frees; a stream whose path died silently
//! (a black-holing proxy) gives its slot back once an HTTP/2 keep-alive ping
//! goes unanswered; a request whose message never arrives
//! (`raw::call_stalled`) holds no slot and is cut at the read timeout.
//! In-flight slots are held by Mints stalled in the writer behind a SQLite
//! write lock the test holds, so the assertions count statuses and never
//! depend on how fast anything runs.

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::AnyConnection;
use tally_proto::v1::{ListOrgsRequest, MintRequest, SubscribeRequest, VerifyRequest};
use tally_tests::{
    Authority, AuthorityOptions, DEADLINE, Mode, Proxy, Verifier, VerifierOptions, bearer, eventually, metric, raw,
    scrape,
};
use tokio::task::JoinSet;
use tonic::{Code, Status};

const VERIFY: &str = "/tally.v1.Authority/Verify";
/// Calls in one burst.
const BURST: usize = 32;

async fn authority(extra: &[&str], heartbeat: Duration) -> Authority {
    let mut serve_args: Vec<String> = vec!["--metrics-listen".into(), "127.0.0.1:0".into()];
    serve_args.extend(extra.iter().map(|a| a.to_string()));
    Authority::start_with(AuthorityOptions { serve_args, heartbeat, ..AuthorityOptions::default() }).await
}

async fn metrics_addr(a: &mut Authority) -> SocketAddr {
    const METRICS: &str = "metrics on ";
    let line = a.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await.unwrap();
    line[METRICS.len()..].trim().parse().unwrap()
}

async fn authority_metric(a: &mut Authority, name: &str) -> f64 {
    let text = scrape(metrics_addr(a).await).await.unwrap();
    metric(&text, name).unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// `BURST` concurrent calls of three kinds; every status (OK as `Ok(())`).
async fn burst(a: &Authority, verifier_token: &str) -> Vec<Result<(), Status>> {
    let mut calls = JoinSet::new();
    for i in 0..BURST {
        let (mut c, boot, token) = (a.client(), a.bootstrap().to_owned(), verifier_token.to_owned());
        calls.spawn(async move {
            match i % 3 {
                0 => c.verify(bearer(VerifyRequest { bundle: token.clone() }, &token)).await.map(drop),
                1 => c.list_orgs(bearer(ListOrgsRequest {}, &boot)).await.map(drop),
                _ => c.mint(bearer(MintRequest { org: "acme".into(), ..Default::default() }, &boot)).await.map(drop),
            }
        });
    }
    let answers = tokio::time::timeout(DEADLINE, calls.join_all()).await.expect("every call of the burst returns");
    assert_eq!(answers.len(), BURST);
    answers
}

fn unavailable(answers: &[Result<(), Status>]) -> usize {
    answers.iter().filter(|a| a.as_ref().is_err_and(|s| s.code() == Code::Unavailable)).count()
}

/// Two Mints that hold both slots of `--max-in-flight 2`: read and
/// admitted, they wait in the writer while the test holds the database's
/// write lock (SQLite's) or a lock on the registry table (PostgreSQL's): a
/// storage stall. SQLite's writer gives up on the lock after its busy
/// timeout (5 s), so the caller checks `mints` are still running.
async fn stall_two_mints(a: &Authority, db: &mut AnyConnection) -> JoinSet<Result<(), Status>> {
    if a.db().is_postgres() {
        sqlx::query("BEGIN").execute(&mut *db).await.unwrap();
        sqlx::query("LOCK TABLE tokens IN EXCLUSIVE MODE").execute(&mut *db).await.unwrap();
    } else {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *db).await.unwrap();
    }
    let mut mints = JoinSet::new();
    for _ in 0..2 {
        let (mut c, boot) = (a.client(), a.bootstrap().to_owned());
        mints.spawn(async move {
            c.mint(bearer(MintRequest { org: "acme".into(), ..Default::default() }, &boot)).await.map(drop)
        });
    }
    mints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_cap_calls_are_shed_with_unavailable_and_none_queue() {
    let mut a = authority(&["--max-in-flight", "2", "--rpc-timeout", "10m"], Duration::from_millis(200)).await;
    a.create_org("acme").await;
    let verifier_token = a.system_token("verifier", &[]).await;
    let channel = raw::channel(a.addr()).await.unwrap();
    let metrics = metrics_addr(&mut a).await;
    let mut db = a.db_connect_writable().await.unwrap();

    // Every call of a burst is answered UNAVAILABLE, at once: none waits for a
    // slot. (Tried again should the writer give up on the lock first.)
    let mut rounds = 0;
    let (answers, mut mints) = loop {
        rounds += 1;
        let mints = stall_two_mints(&a, &mut db).await;
        eventually(DEADLINE, || async {
            let in_flight = metric(&scrape(metrics).await.unwrap(), "tally_authority_in_flight");
            if in_flight == Some(2.0) { Ok(()) } else { Err(format!("in flight: {in_flight:?}")) }
        })
        .await;
        let shed_before = authority_metric(&mut a, "tally_authority_shed_total").await;
        let answers = burst(&a, &verifier_token).await;
        // Health checks are not shed: probes keep seeing an overloaded authority alive.
        assert!(raw::health(&channel, "tally.v1.Authority").await.unwrap(), "health is answered while saturated");
        let shed = authority_metric(&mut a, "tally_authority_shed_total").await - shed_before;
        let in_flight = authority_metric(&mut a, "tally_authority_in_flight").await;
        if in_flight == 2.0 || rounds == 3 {
            assert_eq!(shed, BURST as f64);
            break (answers, mints);
        }
        sqlx::query("ROLLBACK").execute(&mut db).await.unwrap();
        mints.join_all().await;
    };
    assert_eq!(unavailable(&answers), BURST, "{answers:?}");
    let message = answers[0].as_ref().unwrap_err().message().to_owned();
    assert!(message.contains("overloaded"), "{message}");
    assert!(mints.try_join_next().is_none(), "the stalled calls are still waiting");

    // Done, they free their slots; a burst then gets some answers, and
    // whatever it does not get is shed, never queued.
    sqlx::query("ROLLBACK").execute(&mut db).await.unwrap();
    mints.join_all().await;
    eventually(DEADLINE, || {
        let mut c = a.client();
        let req = bearer(VerifyRequest { bundle: verifier_token.clone() }, &verifier_token);
        async move { c.verify(req).await.map(drop).map_err(|s| format!("{s:?}")) }
    })
    .await;
    let shed_before = authority_metric(&mut a, "tally_authority_shed_total").await;
    let answers = burst(&a, &verifier_token).await;
    let ok = answers.iter().filter(|a| a.is_ok()).count();
    let shed = unavailable(&answers);
    assert!(ok >= 1, "{answers:?}");
    assert_eq!(ok + shed, BURST, "only OK or UNAVAILABLE: {answers:?}");
    assert_eq!(authority_metric(&mut a, "tally_authority_shed_total").await - shed_before, shed as f64);
    raw::assert_alive(a.process(), &channel, "tally.v1.Authority").await.unwrap();
}

/// A request whose message never arrives holds no slot: with the only slot
/// free, other calls go on while it waits, and it is answered
/// DEADLINE_EXCEEDED at the read timeout however long the RPC deadline is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_message_never_arrives_holds_no_slot() {
    let mut a = authority(
        &["--max-in-flight", "1", "--rpc-timeout", "10m", "--read-timeout", "1s"],
        Duration::from_millis(200),
    )
    .await;
    let verifier_token = a.system_token("verifier", &[]).await;
    let channel = raw::channel(a.addr()).await.unwrap();
    let auth = format!("Bearer {verifier_token}");
    let metrics = metrics_addr(&mut a).await;
    let stalled =
        tokio::spawn(async move { raw::call_stalled(&channel, VERIFY, &[("authorization", auth.as_bytes())]).await });
    eventually(DEADLINE, || async {
        let reading = metric(&scrape(metrics).await.unwrap(), "tally_authority_reading");
        if reading == Some(1.0) { Ok(()) } else { Err(format!("reading: {reading:?}")) }
    })
    .await;
    assert_eq!(authority_metric(&mut a, "tally_authority_in_flight").await, 0.0);
    let req = bearer(VerifyRequest { bundle: verifier_token.clone() }, &verifier_token);
    a.client().verify(req).await.expect("the one slot is free");

    let reply = tokio::time::timeout(DEADLINE, stalled).await.expect("answered at the read timeout").unwrap().unwrap();
    assert_eq!(reply.code, Code::DeadlineExceeded, "{reply:?}");
    assert_eq!(authority_metric(&mut a, "tally_authority_read_timeouts_total").await, 1.0);
    assert_eq!(authority_metric(&mut a, "tally_authority_rpc_timeouts_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_rpc_timeout_gets_deadline_exceeded_and_a_stream_outlives_it() {
    let mut a = authority(&["--rpc-timeout", "300ms"], Duration::from_millis(100)).await;
    let verifier_token = a.system_token("verifier", &[]).await;
    let channel = raw::channel(a.addr()).await.unwrap();
    let auth = format!("Bearer {verifier_token}");

    let reply =
        tokio::time::timeout(DEADLINE, raw::call_stalled(&channel, VERIFY, &[("authorization", auth.as_bytes())]))
            .await
            .expect("the authority gives up on the stalled call")
            .unwrap();
    assert_eq!(reply.code, Code::DeadlineExceeded, "{reply:?}");
    assert_eq!(authority_metric(&mut a, "tally_authority_rpc_timeouts_total").await, 1.0);

    // A stream is timed only until it starts: 20 heartbeats, 100 ms apart,
    // arrive on one stream that lives far past the 300 ms deadline.
    let req = bearer(SubscribeRequest::default(), &verifier_token);
    let mut stream = a.client().subscribe(req).await.unwrap().into_inner();
    for n in 0..20 {
        let msg = tokio::time::timeout(DEADLINE, stream.message()).await.expect("a heartbeat");
        assert!(matches!(msg, Ok(Some(_))), "message {n}: {msg:?}");
    }
    assert_eq!(authority_metric(&mut a, "tally_authority_rpc_timeouts_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_cap_refuses_the_next_subscribe_and_the_first_streams_go_on() {
    let mut a = authority(&["--max-subscribers", "2"], Duration::from_millis(100)).await;
    let verifier_token = a.system_token("verifier", &[]).await;
    let subscribe = |a: &Authority| {
        let mut c = a.client();
        let req = bearer(SubscribeRequest::default(), &verifier_token);
        async move { c.subscribe(req).await.map(tonic::Response::into_inner) }
    };
    let mut first = subscribe(&a).await.unwrap();
    let mut second = subscribe(&a).await.unwrap();
    for s in [&mut first, &mut second] {
        assert!(matches!(s.message().await, Ok(Some(_))));
    }

    let refused = subscribe(&a).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("at most 2 revocation streams"), "{refused:?}");
    for s in [&mut first, &mut second] {
        for _ in 0..3 {
            let msg = tokio::time::timeout(DEADLINE, s.message()).await.expect("the admitted streams go on");
            assert!(matches!(msg, Ok(Some(_))), "{msg:?}");
        }
    }
    assert_eq!(authority_metric(&mut a, "tally_authority_subscribe_refused_total").await, 1.0);
    assert_eq!(authority_metric(&mut a, "tally_authority_subscribers").await, 2.0);

    // A stream that ends frees its slot.
    drop(first);
    let mut third = eventually(DEADLINE, || async { subscribe(&a).await.map_err(|s| format!("{s:?}")) }).await;
    assert!(matches!(third.message().await, Ok(Some(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_refused_at_the_cap_takes_the_slot_when_it_frees() {
    let a = authority(&["--max-subscribers", "1"], Duration::from_millis(200)).await;
    a.create_org("acme").await;
    let verifier_token = a.system_token("verifier", &[]).await;
    let options = |region: &str| VerifierOptions { region: region.into(), ..VerifierOptions::default() };
    let mut eu = Verifier::start(&a.url(), &verifier_token, options("eu")).await;
    eu.wait_synced().await;

    let mut us = Verifier::start(&a.url(), &verifier_token, options("us")).await;
    let line = us.process().stderr().wait_for(DEADLINE, |l| l.contains("cannot subscribe")).await.unwrap();
    assert!(line.contains("ResourceExhausted"), "{line}");
    let status = us.status().await;
    assert!(!status.synced, "{status:?}");
    // Unsynced, it still answers by asking the authority (Verify is not capped).
    let token = a.mint("acme", &[]).await.token;
    assert!(us.check(&token, "read").await.allowed);

    eu.kill_9();
    us.wait_synced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_path_died_silently_frees_its_slot() {
    let a = authority(&["--max-subscribers", "1", "--http2-keepalive", "1s"], Duration::from_millis(100)).await;
    let verifier_token = a.system_token("verifier", &[]).await;
    let subscribe = |url: String| {
        let req = bearer(SubscribeRequest::default(), &verifier_token);
        async move {
            let mut c =
                tally_proto::v1::authority_client::AuthorityClient::connect(url).await.map_err(|e| e.to_string())?;
            c.subscribe(req).await.map(tonic::Response::into_inner).map_err(|s| format!("{s:?}"))
        }
    };
    // The only slot, taken through a proxy.
    let proxy = Proxy::start(a.addr()).await;
    let mut held = subscribe(proxy.url()).await.unwrap();
    let first = tokio::time::timeout(DEADLINE, held.message()).await.expect("the held stream starts");
    assert!(matches!(first, Ok(Some(_))), "{first:?}");
    let refused = subscribe(a.url()).await.unwrap_err();
    assert!(refused.contains("ResourceExhausted"), "{refused}");

    // The path dies without a FIN or RST. The heartbeats still leave (the
    // proxy swallows them), so only the unanswered pings show it is dead.
    proxy.set(Mode::BlackHole);
    let mut next = eventually(DEADLINE, || subscribe(a.url())).await;
    let first = tokio::time::timeout(DEADLINE, next.message()).await.expect("the new stream starts");
    assert!(matches!(first, Ok(Some(_))), "{first:?}");
}
