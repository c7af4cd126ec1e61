//! A gRPC service (tonic) behind the Tally layer: the bearer token travels
//! in the `authorization` metadata, each RPC maps to an action
//! (`GetOrder` → `read`, `CancelOrder` → `write`), and refusals are gRPC
//! statuses (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `UNAVAILABLE`).
//!
//! ```sh
//! cargo run -p tally-client --example grpc_service -- --verifier http://127.0.0.1:7800 --listen 127.0.0.1:8081
//! grpcurl -plaintext -import-path client/examples/proto -proto orders.proto \
//!     -H "authorization: Bearer $TOKEN" -d '{"id":"7"}' 127.0.0.1:8081 example.orders.v1.Orders/GetOrder
//! ```

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tally_client::{Authorized, GrpcActions, TallyAuthLayer, VerifierClient};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

pub mod pb {
    tonic::include_proto!("example.orders.v1");
}

use pb::orders_server::{Orders, OrdersServer};

#[derive(Debug, Parser)]
struct Args {
    /// The local verifier.
    #[arg(long, env = "TALLY_VERIFIER_URL", default_value = "http://127.0.0.1:7800")]
    verifier: String,
    /// Where to serve gRPC.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

#[derive(Debug, Default)]
struct OrderBook;

/// The subject the layer found in the token (it put [`Authorized`] in the extensions).
fn subject<T>(req: &Request<T>) -> String {
    req.extensions().get::<Authorized>().and_then(|a| a.subject.clone()).unwrap_or_default()
}

#[tonic::async_trait]
impl Orders for OrderBook {
    async fn get_order(&self, req: Request<pb::GetOrderRequest>) -> Result<Response<pb::Order>, Status> {
        let seen_subject = subject(&req);
        let id = req.into_inner().id;
        Ok(Response::new(pb::Order { id, status: "open".into(), seen_subject }))
    }

    async fn cancel_order(&self, req: Request<pb::CancelOrderRequest>) -> Result<Response<pb::Order>, Status> {
        let seen_subject = subject(&req);
        let id = req.into_inner().id;
        Ok(Response::new(pb::Order { id, status: "cancelled".into(), seen_subject }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let auth = TallyAuthLayer::new(VerifierClient::new(&args.verifier)?).service_name("orders").actions(
        GrpcActions::new()
            .method("example.orders.v1.Orders/GetOrder", "read")
            .method("example.orders.v1.Orders/CancelOrder", "write"),
    );
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    Server::builder()
        .layer(auth)
        .add_service(OrdersServer::new(OrderBook))
        .serve_with_incoming(TcpIncoming::from(listener))
        .await?;
    Ok(())
}
