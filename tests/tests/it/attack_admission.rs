//! Finding 2 of the security review: an outsider must not starve the
//! authority. With no credentials, the attacker opens 11 HTTP/2 connections
//! and sends request headers on up to 100 streams each, never a body. Once
//! took every in-flight slot of the authority (1,024): an operator's Revoke
//! of a stolen token got UNAVAILABLE, a verifier's cold check was denied, and
//! the slots stayed taken after the attacker disconnected, until the RPC
//! deadline (here ten minutes, so no clock decides the outcome). Now a slot is
//! taken only once a request is read and authenticated, anonymous requests
//! are bounded per client address, streams per connection are bounded, and
//! authenticated Revoke and Verify keep their capacity.

use std::net::SocketAddr;

use bytes::Bytes;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::{CheckRequest, RevokeRequest};
use tally_tests::{
    Authority, AuthorityOptions, DEADLINE, Verifier, VerifierOptions, bearer, eventually, metric, scrape,
};
use tokio::net::TcpStream;

/// Connections the attacker opens.
const CONNECTIONS: usize = 11;
/// Streams it tries on each.
const STREAMS: usize = 100;
/// The most streams per connection the authority may allow by default.
const STREAM_BOUND: usize = 128;

/// One attacker connection with the streams it opened (kept open: no body,
/// no end of stream) and the server's stream limit.
struct Attacker {
    _streams: Vec<(h2::client::ResponseFuture, h2::SendStream<Bytes>)>,
    server_stream_limit: usize,
    driver: tokio::task::JoinHandle<()>,
}

/// Opens a connection and as many of `STREAMS` request streams as the
/// server lets it have at once, each with headers only.
async fn attack(addr: SocketAddr) -> Attacker {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let mut pings = conn.ping_pong().expect("ping-pong");
    // Drive the connection until a ping comes back: the server's SETTINGS came first.
    tokio::select! {
        r = &mut conn => panic!("connection ended: {r:?}"),
        pong = pings.ping(h2::Ping::opaque()) => drop(pong.unwrap()),
    }
    let server_stream_limit = conn.max_concurrent_send_streams();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client;
    let mut streams = Vec::new();
    for _ in 0..STREAMS.min(server_stream_limit) {
        client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/tally.v1.Authority/Verify"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        match client.send_request(req, false) {
            Ok(stream) => streams.push(stream),
            Err(_) => break, // refused by the server: the attacker's loss
        }
    }
    // Answered once the server has read every header frame sent before it.
    let _ = pings.ping(h2::Ping::opaque()).await;
    Attacker { _streams: streams, server_stream_limit, driver }
}

/// A metric of the authority's, 0 when it does not exist.
async fn gauge(metrics: SocketAddr, name: &str) -> f64 {
    metric(&scrape(metrics).await.unwrap(), name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_without_bodies_take_no_capacity_from_operators_and_verifiers() {
    let options = AuthorityOptions {
        serve_args: ["--metrics-listen", "127.0.0.1:0", "--rpc-timeout", "10m"].map(String::from).to_vec(),
        ..AuthorityOptions::default()
    };
    let mut a = Authority::start_with(options).await;
    const METRICS: &str = "metrics on ";
    let line = a.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await.unwrap();
    let metrics: SocketAddr = line[METRICS.len()..].trim().parse().unwrap();
    a.create_org("acme").await;
    let stolen = a.mint("acme", &[]).await;
    let user = a.mint("acme", &["action in read"]).await.token;
    let verifier_token = a.system_token("verifier", &[]).await;
    let v = Verifier::start(&a.url(), &verifier_token, VerifierOptions::default()).await;
    v.wait_synced().await;

    let mut attackers = Vec::new();
    for _ in 0..CONNECTIONS {
        attackers.push(attack(a.addr()).await);
    }
    let sent: usize = attackers.iter().map(|x| x._streams.len()).sum();
    // Every stream the attacker opened is accounted for: holding a slot,
    // being read, or refused.
    eventually(DEADLINE, || async {
        let held = gauge(metrics, "tally_authority_in_flight").await
            + gauge(metrics, "tally_authority_reading").await
            + gauge(metrics, "tally_authority_shed_total").await;
        if held >= sent as f64 { Ok(()) } else { Err(format!("{held} of {sent} attacker streams seen")) }
    })
    .await;

    // The operator revokes the stolen token; a verifier's cold check passes.
    let revoke = RevokeRequest { target: Some(Target::Family(stolen.family)), reason: "stolen".into() };
    let revoked = a.client().revoke(bearer(revoke, a.bootstrap())).await;
    assert!(revoked.is_ok(), "the operator's Revoke: {revoked:?}");
    let check = CheckRequest { bundle: user, action: "read".into(), ..Default::default() };
    let r = v.client().check(check).await.unwrap().into_inner();
    assert!(r.allowed, "a cold check during the attack: {r:?}");

    // Anonymous requests being read are bounded per client address.
    let reading = gauge(metrics, "tally_authority_reading").await;
    assert!(reading <= 64.0, "{reading} anonymous requests held open from one address");

    // Streams per connection are bounded.
    for x in &attackers {
        assert!(
            x.server_stream_limit <= STREAM_BOUND,
            "the authority allows {} concurrent streams per connection",
            x.server_stream_limit
        );
    }

    // Gone with the attacker's connections: nothing is held for its deadline.
    for x in attackers {
        x.driver.abort();
    }
    eventually(DEADLINE, || async {
        let in_flight = gauge(metrics, "tally_authority_in_flight").await;
        let reading = gauge(metrics, "tally_authority_reading").await;
        if in_flight + reading == 0.0 { Ok(()) } else { Err(format!("in flight {in_flight}, reading {reading}")) }
    })
    .await;
    assert!(a.process().try_status().is_none(), "the authority runs");
}
