//! The fault-injection proxy itself, against a TCP echo server: each mode
//! does to the bytes what the fault scenarios rely on.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tally_tests::{Mode, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);
/// Deadline for what must arrive.
const DEADLINE: Duration = Duration::from_secs(5);

async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

/// Sends `msg` and reads exactly its length back.
async fn round_trip(conn: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    conn.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    conn.read_exact(&mut back).await?;
    Ok(back)
}

/// What a read sees within `wait`: `None` when nothing at all happens.
async fn read_within(conn: &mut TcpStream, wait: Duration) -> Option<std::io::Result<usize>> {
    let mut buf = [0u8; 64];
    tokio::time::timeout(wait, conn.read(&mut buf)).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_modes_do_what_they_say() {
    let (echo, _server) = echo_server().await;
    let proxy = Proxy::start(echo).await;
    assert_eq!(proxy.upstream(), echo);

    // Pass.
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut a, b"hello").await.unwrap(), b"hello");

    // Delay: latency each way.
    proxy.set(Mode::Delay(Duration::from_millis(200)));
    let t = Instant::now();
    assert_eq!(round_trip(&mut a, b"slow").await.unwrap(), b"slow");
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());

    // Throttle: 8 KB at 16 KB/s each way takes about a second.
    proxy.set(Mode::Throttle(16 * 1024));
    let t = Instant::now();
    let big = vec![7u8; 8 * 1024];
    assert_eq!(tokio::time::timeout(DEADLINE, round_trip(&mut a, &big)).await.unwrap().unwrap(), big);
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());

    // Stall: nothing until the mode changes, then everything.
    proxy.set(Mode::Stall);
    a.write_all(b"held").await.unwrap();
    assert!(read_within(&mut a, QUIET).await.is_none(), "a stalled link delivers nothing");
    proxy.set(Mode::Pass);
    let mut back = [0u8; 4];
    tokio::time::timeout(DEADLINE, a.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(&back, b"held");

    // Black hole: no bytes, no FIN, no RST, and the connection stays dead
    // after the link comes back; new connections pass.
    proxy.set(Mode::BlackHole);
    a.write_all(b"lost").await.unwrap();
    assert!(read_within(&mut a, QUIET).await.is_none(), "a black hole answers nothing, not even EOF");
    let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
    during.write_all(b"lost too").await.unwrap();
    assert!(read_within(&mut during, QUIET).await.is_none());
    proxy.set(Mode::Pass);
    a.write_all(b"still lost").await.unwrap();
    assert!(read_within(&mut a, QUIET).await.is_none(), "a black-holed connection stays dead");
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut b, b"fresh").await.unwrap(), b"fresh");
    // Closing all ends the dead ones too, with a FIN.
    proxy.close_all();
    for conn in [&mut a, &mut during, &mut b] {
        let r = read_within(conn, DEADLINE).await.expect("closed");
        assert!(matches!(r, Ok(0)), "{r:?}");
    }

    // Cut: open connections see EOF, new ones are refused.
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c, b"x").await.unwrap(), b"x");
    proxy.set(Mode::Cut);
    let r = read_within(&mut c, DEADLINE).await.expect("cut");
    assert!(matches!(r, Ok(0)), "{r:?}");
    let refused = match TcpStream::connect(proxy.addr()).await {
        Err(e) => Err(e),
        Ok(mut d) => round_trip(&mut d, b"y").await,
    };
    assert!(refused.is_err(), "{refused:?}");

    // Reset: open connections see RST.
    proxy.set(Mode::Pass);
    let mut e = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut e, b"z").await.unwrap(), b"z");
    proxy.set(Mode::Reset);
    let r = read_within(&mut e, DEADLINE).await.expect("reset");
    assert!(matches!(&r, Err(err) if err.kind() == ErrorKind::ConnectionReset), "{r:?}");

    proxy.set(Mode::Pass);
    let mut f = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut f, b"back").await.unwrap(), b"back");
    assert!(proxy.accepted() >= 6);
    assert!(proxy.forwarded() > 0);
}
