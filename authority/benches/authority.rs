//! Criterion benchmarks of the authority end to end: real gRPC on loopback,
//! the real server in-process on a multi-thread tokio runtime, a real SQLite
//! file (WAL, `synchronous=FULL`) in a temp dir.
//!
//! One iteration is one RPC; throughput is reported in RPCs per second. N
//! concurrent callers are N tasks, each doing its share of the iterations over
//! a clone of one of [`CONNECTIONS`] client connections (one HTTP/2 connection
//! would funnel every caller through one server-side connection task).
//!
//! Client and server share the process and its runtime, so on a small machine
//! the client's CPU counts against the server's.
//!
//! * `verify`: Verify of a 5-caveat token (bearer: a `role = verifier` token).
//! * `mint`: Mint of a 3-caveat request (5 caveats in the minted token).
//! * `revoke`: Revoke by family id of distinct tokens minted beforehand,
//!   outside the timed section; every call is one durable log append.
//!
//! `cargo bench -p tally-authority --bench authority`

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tally_authority::{Authority, Kek, MintSpec, Settings, SystemClock};
use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

const KEK_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// Client connections the callers share (caller i uses connection i mod this).
const CONNECTIONS: usize = 8;
/// Concurrent callers measured.
const CALLERS: [usize; 2] = [1, 64];
const ORG: &str = "acme";
/// Caveats Mint is asked to add; with `org` and `expires` the token has 5.
const CAVEATS: [&str; 3] = ["action in read,write", "resource = apps/web/*", "service = web"];

/// A served authority and its clients.
struct Fixture {
    _dir: tempfile::TempDir,
    authority: Arc<Authority>,
    bootstrap: String,
    clients: Vec<AuthorityClient<Channel>>,
    operator: MetadataValue<Ascii>,
    verifier: MetadataValue<Ascii>,
    /// A 5-caveat token of org `acme`.
    token: String,
    shutdown: CancellationToken,
}

fn auth_value(token: &str) -> MetadataValue<Ascii> {
    format!("Bearer {token}").parse().expect("token is ASCII")
}

fn with_auth<T>(msg: T, auth: &MetadataValue<Ascii>) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", auth.clone());
    req
}

fn mint_request() -> pb::MintRequest {
    pb::MintRequest { org: ORG.into(), caveats: CAVEATS.iter().map(|c| c.to_string()).collect(), ..Default::default() }
}

impl Fixture {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("authority.db");
        let kek = || Kek::from_hex(KEK_HEX).expect("kek");
        let clock = Arc::new(SystemClock);
        let bootstrap = Authority::init(&db, kek(), clock.clone()).await.expect("init");
        let authority = Authority::open(&db, kek(), clock, Settings::default()).await.expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (authority, shutdown) = (authority.clone(), shutdown.clone());
            async move { tally_authority::serve(listener, authority, None, shutdown).await.expect("serve") }
        });
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            clients.push(AuthorityClient::connect(format!("http://{addr}")).await.expect("connect"));
        }
        let operator = auth_value(&bootstrap);
        let mut client = clients[0].clone();
        let req = pb::CreateOrgRequest { org: ORG.into() };
        client.create_org(with_auth(req, &operator)).await.expect("create org");
        let req =
            pb::MintRequest { org: "system".into(), caveats: vec!["role = verifier".into()], ..Default::default() };
        let verifier = client.mint(with_auth(req, &operator)).await.expect("verifier token").into_inner().token;
        let token = client.mint(with_auth(mint_request(), &operator)).await.expect("mint").into_inner().token;
        let verifier = auth_value(&verifier);
        let check = client.verify(with_auth(pb::VerifyRequest { bundle: token.clone() }, &verifier)).await;
        assert!(check.expect("verify").into_inner().valid, "the benchmark token must verify");
        Self { _dir: dir, authority, bootstrap, clients, operator, verifier, token, shutdown }
    }

    /// Mints `n` tokens of `acme` straight on the authority (64 at a time, to
    /// ride group commit) and returns their family ids in hex.
    async fn families(&self, n: u64) -> Arc<Vec<String>> {
        let per_task = n.div_ceil(64).max(1);
        let mut tasks = Vec::new();
        for start in (0..n).step_by(per_task as usize) {
            let count = per_task.min(n - start);
            let (authority, bootstrap) = (self.authority.clone(), self.bootstrap.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let spec = MintSpec { org: ORG.into(), ..Default::default() };
                    out.push(authority.mint(Some(&bootstrap), spec).await.expect("mint").family.to_hex());
                }
                out
            }));
        }
        let mut all = Vec::with_capacity(n as usize);
        for task in tasks {
            all.extend(task.await.expect("mint task"));
        }
        Arc::new(all)
    }
}

/// Runs `iters` calls of `call` spread over `callers` concurrent tasks and
/// returns the wall time. `call` gets a client and the call's index in `0..iters`.
async fn run<F, Fut>(clients: &[AuthorityClient<Channel>], callers: usize, iters: u64, call: F) -> Duration
where
    F: Fn(AuthorityClient<Channel>, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let callers = (callers as u64).min(iters).max(1);
    let (share, extra) = (iters / callers, iters % callers);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(callers as usize);
    let mut first = 0;
    for i in 0..callers {
        let count = share + u64::from(i < extra);
        let (client, call) = (clients[i as usize % clients.len()].clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            for index in first..first + count {
                call(client.clone(), index).await;
            }
        }));
        first += count;
    }
    for task in tasks {
        task.await.expect("caller task");
    }
    start.elapsed()
}

/// A group sized to keep the whole run to a couple of minutes.
fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(1));
    group
}

fn bench(c: &mut Criterion) {
    let rt = Arc::new(tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime"));
    let fx = Arc::new(rt.block_on(Fixture::start()));

    {
        let mut group = configure(c, "verify");
        for callers in CALLERS {
            group.bench_with_input(BenchmarkId::new("callers", callers), &callers, |b, &callers| {
                b.to_async(&*rt).iter_custom(|iters| {
                    let fx = fx.clone();
                    async move {
                        let (auth, bundle) = (fx.verifier.clone(), fx.token.clone());
                        run(&fx.clients, callers, iters, move |mut client, _| {
                            let req = with_auth(pb::VerifyRequest { bundle: bundle.clone() }, &auth);
                            async move {
                                let resp = client.verify(req).await.expect("verify").into_inner();
                                assert!(resp.valid);
                            }
                        })
                        .await
                    }
                })
            });
        }
        group.finish();
    }

    {
        let mut group = configure(c, "mint");
        for callers in CALLERS {
            group.bench_with_input(BenchmarkId::new("callers", callers), &callers, |b, &callers| {
                b.to_async(&*rt).iter_custom(|iters| {
                    let fx = fx.clone();
                    async move {
                        let auth = fx.operator.clone();
                        run(&fx.clients, callers, iters, move |mut client, _| {
                            let req = with_auth(mint_request(), &auth);
                            async move {
                                client.mint(req).await.expect("mint");
                            }
                        })
                        .await
                    }
                })
            });
        }
        group.finish();
    }

    {
        let mut group = configure(c, "revoke");
        for callers in CALLERS {
            group.bench_with_input(BenchmarkId::new("callers", callers), &callers, |b, &callers| {
                b.to_async(&*rt).iter_custom(|iters| {
                    let fx = fx.clone();
                    async move {
                        let families = fx.families(iters).await; // untimed
                        let auth = fx.operator.clone();
                        run(&fx.clients, callers, iters, move |mut client, index| {
                            let target = pb::revoke_request::Target::Family(families[index as usize].clone());
                            let req =
                                with_auth(pb::RevokeRequest { target: Some(target), reason: "bench".into() }, &auth);
                            async move {
                                client.revoke(req).await.expect("revoke");
                            }
                        })
                        .await
                    }
                })
            });
        }
        group.finish();
    }

    fx.shutdown.cancel();
}

criterion_group!(benches, bench);
criterion_main!(benches);
