//! A minimal HTTP/1.1 endpoint for Prometheus text metrics, shared by the
//! authority and the verifier. It answers `GET /metrics` (and `/`) with
//! whatever `render` returns; anything else gets 404. Deliberately tiny: the
//! services' real API is gRPC, and a scrape endpoint needs no framework.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Largest request head read before answering.
const MAX_REQUEST: usize = 8 * 1024;

/// Serves until `shutdown` completes.
pub async fn serve<R>(listener: TcpListener, render: R, shutdown: impl Future<Output = ()>)
where
    R: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    tokio::pin!(shutdown);
    loop {
        let (mut conn, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(_) => continue,
            },
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_REQUEST];
            let mut len = 0;
            while len < buf.len() {
                match conn.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let response = if head.starts_with("GET ") && (path == "/metrics" || path == "/") {
                let body = render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
            };
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// Appends one sample in Prometheus text format, with HELP and TYPE lines.
pub fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}
