//! An HTTP service (axum) that admits a request only when the local Tally
//! verifier allows its bearer token: `GET` needs `read`, `PUT`/`DELETE`
//! need `write`/`delete`, the resource is the path (`docs/42`), and the
//! service name is `docs`. `/healthz` stays open.
//!
//! ```sh
//! cargo run -p tally-client --example http_service -- --verifier http://127.0.0.1:7800 --listen 127.0.0.1:8080
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/docs/42
//! ```

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::{ConnectInfo, Path};
use axum::routing::get;
use axum::{Extension, Router};
use clap::Parser;
use tally_client::{Authorized, HttpActions, TallyAuthLayer, VerifierClient};

#[derive(Debug, Parser)]
struct Args {
    /// The local verifier.
    #[arg(long, env = "TALLY_VERIFIER_URL", default_value = "http://127.0.0.1:7800")]
    verifier: String,
    /// Where to serve HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The org this service belongs to: only tokens of that org are let in
    /// (a multi-tenant deployment sets it for every service).
    #[arg(long)]
    org: Option<String>,
}

async fn read_doc(Path(id): Path<String>, Extension(who): Extension<Authorized>) -> String {
    // Log and show the family id and subject, never the token.
    format!("doc {id} for {}\n", who.subject.as_deref().unwrap_or("anonymous"))
}

async fn write_doc(Path(id): Path<String>, Extension(who): Extension<Authorized>) -> String {
    format!("saved doc {id} as {}\n", who.subject.as_deref().unwrap_or("anonymous"))
}

async fn delete_doc(Path(id): Path<String>) -> String {
    format!("deleted doc {id}\n")
}

/// The application: the protected routes behind the layer, `/healthz` outside it.
fn app(verifier: VerifierClient, org: Option<&str>) -> Router {
    let mut auth = TallyAuthLayer::new(verifier)
        .service_name("docs")
        .actions(HttpActions)
        // axum keeps the peer address here when served with connect info.
        .client_ip(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
    if let Some(org) = org {
        auth = auth.org(org);
    }
    let protected = Router::new().route("/docs/{id}", get(read_doc).put(write_doc).delete(delete_doc)).layer(auth);
    Router::new().route("/healthz", get(|| async { "ok\n" })).merge(protected)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let verifier = VerifierClient::new(&args.verifier)?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    let app = app(verifier, args.org.as_deref());
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
