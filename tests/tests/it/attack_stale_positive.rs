//! An authority that announces a head its stream never delivers. Two
//! authorities once ran on one SQLite file: a revocation made through the
//! second (seq 9, 10) reached the database, the first reloaded its head from
//! it and announced 10 in every heartbeat, but its live stream never carried
//! 9 and 10; its verifier stayed "synced" at 8 and answered from its cache.
//! A fake `tally.v1.Authority` plays that authority here (a fault, so a fake:
//! the real one is being made to refuse a second process on one database):
//! it replays seqs 1..8 with their running digests on every Subscribe, then
//! heartbeats forever, announcing 8 until the test turns the lie on and 10
//! after. The real `tally-verifier` must stop answering from its cache (not
//! synced, health NOT_SERVING), resubscribe from 8, and, as the lie persists
//! on the next stream, reset (flush, resubscribe from 0).
//!
//! The authority's half, with the real binary: a second `serve` on the
//! SQLite file of a running authority refuses to start, with one line, and
//! the first goes on serving. (On PostgreSQL a second `serve` is a replica:
//! each replica's head advances only by the entries it streams, read from
//! the database in order, so it never announces a head its stream skips;
//! `replicas.rs` proves the log is one.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tally_authority::{Target, next_digest};
use tally_proto::v1 as pb;
use tally_proto::v1::authority_server::{Authority as AuthorityApi, AuthorityServer};
use tally_tests::{AUTHORITY, Authority, Child, TestStore, Verifier, VerifierOptions, binary_in, eventually, raw};
use tally_token::{KeyId, Macaroon, RootKey, TallyId};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The seqs the fake authority delivers.
const DELIVERED: u64 = 8;
/// The head it announces once it lies: 9 and 10 never come.
const ANNOUNCED: u64 = 10;
const EPOCH: &str = "5e1f0c2a9d4b7e6f8a3c1b2d4e6f8a0c";
/// The fake's heartbeat interval (the verifier does not know it).
const HEARTBEAT: Duration = Duration::from_millis(100);
/// The verifier's `--fail-closed-after`: a stall is declared after half of it.
const THRESHOLD: Duration = Duration::from_secs(2);
/// Generous: every step takes a few bounds; the machine is shared.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long the test watches the verifier stay unsynced behind the lie.
const WATCH: Duration = Duration::from_secs(3);

/// What one Subscribe asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Asked {
    from_seq: u64,
    epoch: String,
    from_digest: Vec<u8>,
}

/// The fake authority's state, shared with the test.
#[derive(Debug, Clone)]
struct Liar {
    /// Seqs 1..=DELIVERED with their running digests.
    log: Arc<Vec<pb::Revocation>>,
    /// The head its heartbeats announce.
    announced: Arc<AtomicU64>,
    /// Every Subscribe it got, in order.
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl Liar {
    fn new() -> Self {
        let mut digest = [0u8; 16];
        let log = (1..=DELIVERED)
            .map(|seq| {
                let target = Target::Family([seq as u8; 16]);
                digest = next_digest(&digest, seq, &target);
                let Target::Family(family) = target else { unreachable!("made a family above") };
                pb::Revocation {
                    seq,
                    target: Some(pb::RevocationTarget {
                        target: Some(pb::revocation_target::Target::Family(family.to_vec())),
                    }),
                    digest: digest.to_vec(),
                    expires_at_unix_ms: 0,
                }
            })
            .collect();
        Self { log: Arc::new(log), announced: Arc::new(AtomicU64::new(DELIVERED)), asked: Arc::default() }
    }

    /// The digest the log has at `seq` (empty at 0).
    fn digest_at(&self, seq: u64) -> Vec<u8> {
        self.log.iter().find(|r| r.seq == seq).map(|r| r.digest.clone()).unwrap_or_default()
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    /// Serves `tally.v1.Authority` on 127.0.0.1:0.
    async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the fake authority");
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tonic::transport::Server::builder().add_service(AuthorityServer::new(self.clone()));
        tokio::spawn(server.serve_with_incoming(incoming));
        addr
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn event(event: pb::subscribe_event::Event) -> Result<pb::SubscribeEvent, Status> {
    Ok(pb::SubscribeEvent { event: Some(event), sent_at_unix_ms: now_ms() })
}

fn unavailable<T>() -> Result<Response<T>, Status> {
    Err(Status::unavailable("this fake authority only streams"))
}

#[tonic::async_trait]
impl AuthorityApi for Liar {
    async fn create_org(&self, _: Request<pb::CreateOrgRequest>) -> Result<Response<pb::CreateOrgResponse>, Status> {
        unavailable()
    }
    async fn list_orgs(&self, _: Request<pb::ListOrgsRequest>) -> Result<Response<pb::ListOrgsResponse>, Status> {
        unavailable()
    }
    async fn rotate_key(&self, _: Request<pb::RotateKeyRequest>) -> Result<Response<pb::RotateKeyResponse>, Status> {
        unavailable()
    }
    async fn retire_key(&self, _: Request<pb::RetireKeyRequest>) -> Result<Response<pb::RetireKeyResponse>, Status> {
        unavailable()
    }
    async fn list_keys(&self, _: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        unavailable()
    }
    async fn mint(&self, _: Request<pb::MintRequest>) -> Result<Response<pb::MintResponse>, Status> {
        unavailable()
    }
    async fn verify(&self, _: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        unavailable()
    }
    async fn revoke(&self, _: Request<pb::RevokeRequest>) -> Result<Response<pb::RevokeResponse>, Status> {
        unavailable()
    }
    async fn introspect(&self, _: Request<pb::IntrospectRequest>) -> Result<Response<pb::IntrospectResponse>, Status> {
        unavailable()
    }
    async fn list_audit(&self, _: Request<pb::ListAuditRequest>) -> Result<Response<pb::ListAuditResponse>, Status> {
        unavailable()
    }
    async fn status(
        &self,
        _: Request<pb::AuthorityStatusRequest>,
    ) -> Result<Response<pb::AuthorityStatusResponse>, Status> {
        unavailable()
    }

    type SubscribeStream = ReceiverStream<Result<pb::SubscribeEvent, Status>>;

    /// Replays what it has after `from_seq`, then heartbeats forever.
    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = req.into_inner();
        self.asked.lock().unwrap().push(Asked {
            from_seq: r.from_seq,
            epoch: r.epoch.clone(),
            from_digest: r.from_digest.clone(),
        });
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            use pb::subscribe_event::Event;
            for rev in this.log.iter().filter(|rev| rev.seq > r.from_seq) {
                if tx.send(event(Event::Revocation(rev.clone()))).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let hb = pb::Heartbeat { head_seq: this.announced.load(Ordering::SeqCst), epoch: EPOCH.into() };
                if tx.send(event(Event::Heartbeat(hb))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A token of Tally's own API with `role = verifier`, under a key only this
/// test knows: the fake checks no bearer, the verifier reads the role.
fn verifier_token() -> String {
    let key = RootKey::from_bytes([7; 32]);
    let mut m = Macaroon::mint(&key, TallyId::new(KeyId(1), [3; 16]).encode(), None);
    m.add_first_party("role = verifier");
    m.to_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_announcing_a_head_the_stream_never_delivers_unsync_then_reset_the_verifier() {
    let liar = Liar::new();
    let addr = liar.serve().await;
    let options = VerifierOptions { fail_closed_after: THRESHOLD, ..VerifierOptions::default() };
    let v = Verifier::start(&format!("http://{addr}"), &verifier_token(), options).await;
    let health = raw::channel(v.addr()).await.expect("a channel to the verifier");

    // Honest so far: 1..8 delivered, head 8.
    let s = v.wait_synced().await;
    assert_eq!((s.applied_seq, s.head_seq, s.epoch.as_str(), s.resets), (DELIVERED, DELIVERED, EPOCH, 0));
    assert!(raw::health(&health, "tally.v1.Verifier").await.unwrap(), "SERVING once synced");
    let first = liar.asked();
    assert_eq!(first.len(), 1, "one stream so far: {first:?}");
    assert_eq!(first[0].from_seq, 0);

    // The lie: heartbeats announce 10; 9 and 10 never come.
    liar.announced.store(ANNOUNCED, Ordering::SeqCst);
    eventually(DEADLINE, || async {
        let s = v.status().await;
        if !s.synced {
            Ok(())
        } else {
            Err(format!("still synced, applied {} of {}: {s:?}", s.applied_seq, s.head_seq))
        }
    })
    .await;
    eventually(DEADLINE, || async {
        match raw::health(&health, "tally.v1.Verifier").await {
            Ok(false) => Ok(()),
            other => Err(format!("health says {other:?} while behind")),
        }
    })
    .await;

    // It resubscribes from its position (the authority would replay 9 and 10
    // from its database)…
    let resumed = eventually(DEADLINE, || async {
        let asked = liar.asked();
        match asked.iter().position(|a| a.from_seq == DELIVERED) {
            Some(i) => Ok((i, asked[i].clone())),
            None => Err(format!("no Subscribe from {DELIVERED}: {asked:?}")),
        }
    })
    .await;
    assert_eq!(resumed.1, Asked { from_seq: DELIVERED, epoch: EPOCH.into(), from_digest: liar.digest_at(DELIVERED) });
    // …and as the same stall persists on that stream, it resets: a Subscribe from 0.
    eventually(DEADLINE, || async {
        let asked = liar.asked();
        if asked[resumed.0 + 1..].iter().any(|a| a.from_seq == 0 && a.epoch.is_empty()) {
            Ok(())
        } else {
            Err(format!("no Subscribe from 0 after the one from {DELIVERED}: {asked:?}"))
        }
    })
    .await;
    let s = eventually(DEADLINE, || async {
        let s = v.status().await;
        if s.resets >= 1 { Ok(s) } else { Err(format!("no reset counted: {s:?}")) }
    })
    .await;
    assert!(!s.synced, "{s:?}");

    // As long as the lie lasts, it is never synced nor serving again.
    let until = tokio::time::Instant::now() + WATCH;
    while tokio::time::Instant::now() < until {
        let s = v.status().await;
        assert!(!s.synced, "synced again behind the announced head: {s:?}");
        assert!(!raw::health(&health, "tally.v1.Verifier").await.unwrap(), "SERVING behind the announced head: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = v.stderr_lines().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_authority_on_one_sqlite_file_refuses_to_start() {
    if TestStore::is_postgres() {
        eprintln!("a second authority on PostgreSQL is a replica: see replicas.rs");
        return;
    }
    let mut a = Authority::start().await;
    a.create_org("acme").await;
    let kek_file = a.dir().join("kek.hex");
    let args: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--db".into(),
        a.db().arg().into(),
        "--kek-file".into(),
        kek_file.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    let mut second = Child::spawn(&binary_in(AUTHORITY.package, AUTHORITY.name), args, &[]).unwrap();
    let status = second.wait(DEADLINE).await.expect("the second authority exits");
    assert!(!status.success(), "a second authority served the same database");
    let stderr = second.stderr().snapshot();
    assert_eq!(stderr.len(), 1, "one clear line: {stderr:?}");
    assert!(stderr[0].contains("in use by another tally-authority"), "{stderr:?}");
    assert!(second.stdout().snapshot().iter().all(|l| !l.starts_with("listening on")), "it never listened");

    // The first one goes on: it mints and revokes, and is the log's only writer.
    let minted = a.mint("acme", &[]).await;
    let req =
        pb::RevokeRequest { target: Some(pb::revoke_request::Target::Family(minted.family)), reason: String::new() };
    let seq = a.client().revoke(tally_tests::bearer(req, a.bootstrap())).await.unwrap().into_inner().seq;
    assert_eq!(seq, 1);
    assert!(a.process().try_status().is_none(), "the first authority runs");
}
