//! A daemon's start: its ports bound, their addresses said, the shutdown
//! signal watched, the metrics served.

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `listen` and, when asked, `metrics_listen` (each bound address said
/// on stdout: scripts and tests that pass port 0 read it there), serves the
/// metrics `register` fills until shutdown, and returns the service's
/// listener with a token cancelled on the first SIGINT or SIGTERM.
pub async fn start(
    listen: &str,
    metrics_listen: Option<&str>,
    register: impl FnOnce(&mut Registry),
) -> std::io::Result<(TcpListener, CancellationToken)> {
    let listener = bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::signal::cancel_on_signal(shutdown.clone()));
    if let Some(addr) = metrics_listen {
        let mut registry = Registry::default();
        register(&mut registry);
        crate::metrics::spawn(bind(addr).await?, registry, shutdown.clone())?;
    }
    Ok((listener, shutdown))
}

async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))
}
