//! A TCP proxy the test controls, put between a verifier and the authority to
//! inject network faults: pass, cut, black-hole, delay, reset and throttle,
//! switchable at run time. It listens on 127.0.0.1:0 and lives in the test's
//! runtime: dropping the [`Proxy`] (or the test ending, also by a panic)
//! closes the listener and every connection.
//!
//! Each accepted connection dials the upstream afresh, so a restarted
//! authority on the same port is reached by the next connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Bytes read from a socket at once.
const CHUNK: usize = 16 * 1024;
/// Throttled bytes are written in slices this many times a second.
const THROTTLE_SLICES_PER_SECOND: u64 = 20;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything as it comes.
    Pass,
    /// Close every connection (FIN) and refuse new ones (accepted and reset
    /// at once, so the client sees an error on its first read or write).
    Cut,
    /// Keep connections open but drop every byte both ways: no FIN, no RST,
    /// as when a path dies silently. New connections are accepted and
    /// treated the same. A connection that was black-holed has lost bytes, so
    /// it stays dead (silent) even after the mode changes back to `Pass`,
    /// until a `Cut` or `Reset` ends it: as a connection whose NAT or
    /// conntrack entry is gone. Only new connections pass again.
    BlackHole,
    /// Hold every byte both ways (no FIN, no RST) and deliver it all once the
    /// mode changes: a partition that heals before TCP gives up.
    Stall,
    /// Forward each chunk this long after it was read (latency, not a
    /// throughput cap: chunks are pipelined).
    Delay(Duration),
    /// Reset every connection (SO_LINGER 0, so close sends RST) and reset new
    /// ones at once.
    Reset,
    /// Forward at most this many bytes per second in each direction.
    Throttle(u64),
}

/// What connections watch: the mode, and how many times every connection
/// was told to close or reset (a connection older than the last such order
/// obeys it, even when the mode has changed again since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    mode: Mode,
    closes: u64,
    resets: u64,
}

impl Control {
    /// What a connection born under `born` must do now.
    fn order(&self, born: &Control) -> Option<End> {
        if self.resets > born.resets {
            Some(End::Reset)
        } else if self.closes > born.closes {
            Some(End::Close)
        } else {
            None
        }
    }
}

/// Counters, for tests that want to see that something reconnected.
#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    forwarded: AtomicU64,
}

/// A running proxy. Dropping it stops it and closes all its connections.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: watch::Sender<Control>,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it drops them all.
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`, in `Pass` mode.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (control, rx) = watch::channel(Control { mode: Mode::Pass, closes: 0, resets: 0 });
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(accept_loop(listener, upstream, rx, stats.clone()));
        Self { addr, upstream, control, stats, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for a verifier's `--authority`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches mode; takes effect at once on every connection. `Cut` and
    /// `Reset` also end every existing connection.
    pub fn set(&self, mode: Mode) {
        self.control.send_modify(|c| {
            c.mode = mode;
            match mode {
                Mode::Cut => c.closes += 1,
                Mode::Reset => c.resets += 1,
                _ => {}
            }
        });
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.control.borrow().mode
    }

    /// Closes (FIN) every existing connection, dead ones included, without
    /// changing the mode.
    pub fn close_all(&self) {
        self.control.send_modify(|c| c.closes += 1);
    }

    /// Resets (RST) every existing connection without changing the mode.
    pub fn reset_all(&self) {
        self.control.send_modify(|c| c.resets += 1);
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.stats.forwarded.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    control: watch::Receiver<Control>,
    stats: Arc<Stats>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                if matches!(control.borrow().mode, Mode::Cut | Mode::Reset) {
                    reset(&client);
                    continue;
                }
                conns.spawn(connection(client, upstream, control.clone(), stats.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Makes the socket's close send RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// How a connection ended, so the other side can be told the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// EOF or an ordinary error: close (FIN).
    Close,
    /// The peer reset: reset the other side too.
    Reset,
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut control: watch::Receiver<Control>, stats: Arc<Stats>) {
    let born = *control.borrow_and_update();
    // A black-holed new connection never reaches the upstream either.
    let server = if born.mode == Mode::BlackHole {
        None
    } else {
        match TcpStream::connect(upstream).await {
            Ok(s) => Some(s),
            Err(_) => {
                // Nothing listens: the client sees a refusal as a reset.
                reset(&client);
                return;
            }
        }
    };
    let _ = client.set_nodelay(true);
    let client = Arc::new(client);
    let Some(server) = server else {
        drain_until_ended(&client, None, &born, &mut control).await;
        return;
    };
    let _ = server.set_nodelay(true);
    let server = Arc::new(server);

    if forward(&client, &server, &born, &mut control, stats).await {
        // Black-holed: forwarding stopped for good; read and drop both ways.
        drain_until_ended(&client, Some(&server), &born, &mut control).await;
    }
}

/// Forwards both ways until the connection ends (false) or is black-holed
/// (true; the pumps are dropped on return, whatever they held is lost).
async fn forward(
    client: &Arc<TcpStream>,
    server: &Arc<TcpStream>,
    born: &Control,
    control: &mut watch::Receiver<Control>,
    stats: Arc<Stats>,
) -> bool {
    // The pumps read the mode from the proxy's own control channel: a change
    // is seen by the very next chunk, with no task in between to lag behind.
    let mode = control.clone();
    let up = pump(client.clone(), server.clone(), mode.clone(), stats.clone());
    let down = pump(server.clone(), client.clone(), mode, stats);
    tokio::pin!(up, down);
    loop {
        tokio::select! {
            end = &mut up => { finish(server, end); return false; }
            end = &mut down => { finish(client, end); return false; }
            changed = control.changed() => {
                if changed.is_err() {
                    return false;
                }
                let now = *control.borrow_and_update();
                match now.order(born) {
                    Some(end) => {
                        finish(client, Some(end));
                        finish(server, Some(end));
                        return false;
                    }
                    None if now.mode == Mode::BlackHole => return true,
                    None => {}
                }
            }
        }
    }
}

/// Before a socket is dropped: make its close a reset if the end was one.
fn finish(socket: &TcpStream, end: Option<End>) {
    if let Some(End::Reset) = end {
        reset(socket);
    }
}

/// A dead connection: reads and drops whatever either side sends, answers
/// nothing, and sends no FIN even when a side closes; ends only when told to
/// close (FIN) or reset (RST), or with the proxy.
async fn drain_until_ended(
    client: &TcpStream,
    server: Option<&TcpStream>,
    born: &Control,
    control: &mut watch::Receiver<Control>,
) {
    let mut client_open = true;
    let mut server_open = server.is_some();
    let (mut from_client, mut from_server) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        tokio::select! {
            n = read(client, &mut from_client), if client_open => client_open = matches!(n, Ok(n) if n > 0),
            n = read_opt(server, &mut from_server), if server_open => server_open = matches!(n, Ok(n) if n > 0),
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
                if let Some(end) = control.borrow_and_update().order(born) {
                    finish(client, Some(end));
                    if let Some(s) = server {
                        finish(s, Some(end));
                    }
                    return;
                }
            }
        }
    }
}

/// [`read`] that never completes without a socket.
async fn read_opt(from: Option<&TcpStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    match from {
        Some(s) => read(s, buf).await,
        None => std::future::pending().await,
    }
}

async fn read(from: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Forwards `from` → `to` in the current mode until either side ends.
/// Returns how it ended (`None`: the writer failed). Black-hole, cut and
/// reset are the connection task's business: this pump is dropped then.
async fn pump(
    from: Arc<TcpStream>,
    to: Arc<TcpStream>,
    mode: watch::Receiver<Control>,
    stats: Arc<Stats>,
) -> Option<End> {
    // Chunks read with the time they are due: the writer below sends each at
    // its due time, so a delay is latency and reading never waits for it.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = {
        let mode = mode.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match read(&from, &mut buf).await {
                    Ok(0) => return End::Close,
                    Ok(n) => {
                        let due = match mode.borrow().mode {
                            Mode::Delay(d) => Instant::now() + d,
                            _ => Instant::now(),
                        };
                        if tx.send((due, buf[..n].to_vec())).is_err() {
                            return End::Close;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return End::Reset,
                    Err(_) => return End::Close,
                }
            }
        }
    };
    let writer = async move {
        let mut mode = mode;
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if mode.wait_for(|c| c.mode != Mode::Stall).await.is_err() {
                return;
            }
            let throttle = match mode.borrow().mode {
                Mode::Throttle(bps) => Some(bps.max(1)),
                _ => None,
            };
            let result = match throttle {
                None => write_all(&to, &bytes).await,
                Some(bps) => write_throttled(&to, &bytes, bps).await,
            };
            if result.is_err() {
                return;
            }
            stats.forwarded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        end = &mut reader => {
            // Deliver what was read before the end, then report it.
            writer.await;
            Some(end)
        }
        () = &mut writer => None,
    }
}

async fn write_throttled(to: &TcpStream, bytes: &[u8], bps: u64) -> std::io::Result<()> {
    let slice = (bps / THROTTLE_SLICES_PER_SECOND).max(1) as usize;
    for part in bytes.chunks(slice) {
        let started = Instant::now();
        write_all(to, part).await?;
        let budget = Duration::from_secs_f64(part.len() as f64 / bps as f64);
        tokio::time::sleep_until(started + budget).await;
    }
    Ok(())
}
