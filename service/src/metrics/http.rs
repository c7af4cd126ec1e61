//! The HTTP/1.1 endpoint for Prometheus text metrics, shared by the authority
//! and the verifier: `GET /metrics` (and `/`) answered with a registry's
//! metrics, by hyper, under bounds that keep whoever can reach the port from
//! holding connections, tasks or file descriptors without limit.
//!
//! The bounds, each a constant below: at most [`MAX_CONNECTIONS`] connections
//! at once (one past it is closed as soon as it is accepted, with no task);
//! the request head within [`HEADER_READ_TIMEOUT`] and [`MAX_HEAD_BYTES`];
//! the whole connection within [`CONNECTION_TIMEOUT`]; one request per
//! connection. Shutdown stops accepting and closes every open connection.

use std::convert::Infallible;
use std::future::{Future, ready};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Connections served at once. A deployment has a few scrapers (a Prometheus
/// pair, an operator's curl), each with one short request per interval, so
/// 32 leaves them room many times over while an attacker can hold no more
/// than 32 sockets and tasks. A connection past it is closed when accepted.
pub const MAX_CONNECTIONS: usize = 32;

/// Time from the accept to the end of the request head. A scraper sends its
/// head in one segment as soon as it connects; 5 s forgives a slow link and
/// frees a slot held by a silent or slowloris client soon.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a connection may live, whatever it does: head, rendering and writing
/// the response. Prometheus abandons a scrape after its `scrape_timeout` (10 s
/// by default), so an older connection serves no one; this also ends a client
/// that never reads its response.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head (request line and headers), in bytes; a larger one is
/// answered 431. A scrape's head is a few hundred bytes, and 8 KiB is also the
/// smallest read buffer hyper allows, so a connection buffers no more.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Most header fields in a request (431 past it). Prometheus sends about six.
const MAX_HEADERS: usize = 32;

/// Pause after a failed accept (out of file descriptors, say): retrying at
/// once would spin a core for as long as the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `registry` until `shutdown` completes, then closes every open
/// connection.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: impl Future<Output = ()>) {
    serve_text(listener, move || super::encode(&registry), shutdown).await;
}

/// Serves whatever `render` returns: see [`serve`].
async fn serve_text<R>(listener: TcpListener, render: R, shutdown: impl Future<Output = ()>)
where
    R: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let http = builder();
    // Every connection's task, so its length is the number of connections
    // open (once finished ones are reaped) and dropping it on shutdown aborts
    // the rest, which closes their sockets.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            // Closed here: no task, no buffer, and the descriptor is free
            // again before the next accept.
            tracing::debug!(%peer, "metrics: connection refused, {MAX_CONNECTIONS} already open");
            drop(stream);
            continue;
        }
        let render = render.clone();
        let service = service_fn(move |req| ready(Ok::<_, Infallible>(respond(&req, &*render))));
        let conn = http.serve_connection(TokioIo::new(stream), service);
        connections.spawn(async move {
            // At the deadline the connection is dropped, closing its socket.
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: connection ended"),
                Err(_) => tracing::debug!(%peer, "metrics: connection closed at its deadline"),
            }
        });
    }
}

/// hyper's HTTP/1.1 connection settings, the bounds above.
fn builder() -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        // One request per connection: a scraper comes back an interval later
        // (seconds), and an idle connection between scrapes would hold a slot.
        .keep_alive(false);
    http
}

/// The answer to one request: the metrics for `GET /metrics` or `GET /`, 405
/// for another method there, 404 for any other path.
fn respond<R: Fn() -> String>(req: &Request<Incoming>, render: &R) -> Response<String> {
    let path = req.uri().path();
    if path != "/metrics" && path != "/" {
        return status(StatusCode::NOT_FOUND);
    }
    if req.method() != Method::GET {
        let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let mut response = Response::new(render());
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// An empty response with `code`.
fn status(code: StatusCode) -> Response<String> {
    let mut response = Response::new(String::new());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    use super::*;

    const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: tally\r\n\r\n";

    /// A server of a fixed text on a loopback port, its stop signal and its task.
    async fn start() -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_text(listener, || "up 1\n".to_owned(), async move {
            let _ = stopped.await;
        }));
        (addr, stop, server)
    }

    /// Everything the server sends on `conn` until it closes it (a reset
    /// counts as closing: what came before it is kept).
    async fn read_until_closed(conn: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = conn.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends `request` on a new connection and returns the whole answer.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        read_until_closed(&mut conn).await
    }

    #[tokio::test]
    async fn get_of_metrics_or_root_answers_the_text_format_and_other_requests_do_not() {
        let (addr, _stop, _server) = start().await;
        for path in ["/metrics", "/"] {
            let answer = exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: tally\r\n\r\n").as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(answer.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{answer}");
            // One request per connection: the server says so and closed it
            // (the read above ended).
            assert!(answer.contains("connection: close\r\n"), "{answer}");
            assert!(answer.ends_with("\r\n\r\nup 1\n"), "{answer}");
        }
        let answer = exchange(addr, b"GET /metrics/x HTTP/1.1\r\nHost: tally\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
        let answer = exchange(addr, b"POST /metrics HTTP/1.1\r\nHost: tally\r\nContent-Length: 0\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{answer}");
        assert!(answer.contains("allow: GET\r\n"), "{answer}");
        let answer = exchange(addr, b"DELETE /other HTTP/1.1\r\nHost: tally\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    }

    #[tokio::test]
    async fn a_head_past_the_size_bound_is_refused() {
        let (addr, _stop, _server) = start().await;
        let big = format!("GET /metrics HTTP/1.1\r\nHost: tally\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        let mut conn = TcpStream::connect(addr).await.unwrap();
        // The server may close before it has read it all: a failed write is fine.
        let _ = conn.write_all(big.as_bytes()).await;
        let answer = read_until_closed(&mut conn).await;
        // 431, unless the reset for the unread rest of the head overtook it.
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_never_ends_is_closed_at_the_header_deadline() {
        let (addr, _stop, _server) = start().await;
        for partial in [&b""[..], b"GET /metrics HTTP/1.1\r\nHost: tally\r\n"] {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            conn.write_all(partial).await.unwrap();
            let answer = read_until_closed(&mut conn).await;
            let waited = start.elapsed();
            assert!(!answer.contains(" 200 "), "{answer}");
            // Paused time jumps straight to the next timer: the header
            // deadline, not the connection's.
            assert!(waited >= HEADER_READ_TIMEOUT && waited < CONNECTION_TIMEOUT, "{waited:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_is_closed_at_the_connection_deadline() {
        // Far more than loopback's socket buffers hold, both ends together.
        const BODY: usize = 16 << 20;
        let render = || "x".repeat(BODY);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _server = tokio::spawn(serve_text(listener, render, std::future::pending()));
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        conn.write_all(SCRAPE).await.unwrap();
        // Nothing is read while the server fills the socket's buffers with a
        // body far larger than they hold; then it must give up by itself.
        tokio::time::sleep(CONNECTION_TIMEOUT * 2).await;
        let answer = read_until_closed(&mut conn).await;
        assert!(start.elapsed() >= CONNECTION_TIMEOUT);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{}", &answer[..answer.len().min(200)]);
        assert!(answer.len() < BODY, "the whole body arrived: the deadline never cut it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_past_the_cap_is_closed_at_once_and_a_freed_slot_serves_again() {
        let (addr, _stop, _server) = start().await;
        let start = Instant::now();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // The server takes connections in order: this one finds every slot taken.
        let answer = exchange(addr, SCRAPE).await;
        assert_eq!(answer, "", "past the cap: closed without an answer");
        assert!(start.elapsed() < HEADER_READ_TIMEOUT, "closed at once, not at a deadline");

        // One holder leaves; its slot is free as soon as the server has seen
        // it go (a scrape can get there first and be refused, so it retries).
        drop(held.pop());
        loop {
            let answer = exchange(addr, SCRAPE).await;
            if answer.starts_with("HTTP/1.1 200 OK\r\n") {
                break;
            }
            assert_eq!(answer, "");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(start.elapsed() < HEADER_READ_TIMEOUT, "served in the freed slot, not after the others' deadline");
    }

    #[tokio::test]
    async fn shutdown_ends_the_server_and_closes_its_open_connections() {
        let (addr, stop, server) = start().await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        // A full exchange first, so the idle connection above has surely been
        // accepted (connections are taken in order).
        assert!(exchange(addr, SCRAPE).await.starts_with("HTTP/1.1 200 OK\r\n"));
        stop.send(()).unwrap();
        server.await.unwrap();
        assert_eq!(read_until_closed(&mut idle).await, "");
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    }
}
