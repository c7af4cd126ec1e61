//! The transport ceiling: a bare tonic server of `tally.v1.Verifier` whose
//! Check does no work and answers a fixed response of the same size as a
//! real one (`tally-echo`). Same runtime, codec, message sizes and
//! socket options as the verifier, so every Tally figure is divided by what
//! gRPC on loopback costs here.

use anyhow::Context;
use prost::Message;
use tally_proto::v1 as pb;
use tally_proto::v1::verifier_server::{Verifier, VerifierServer};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Same request size limit as the verifier.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// `tally-echo`'s flags.
#[derive(Debug, clap::Parser)]
#[command(
    name = "tally-echo",
    about = "The bench's transport ceiling: a Verifier whose Check answers a fixed response"
)]
pub struct Args {
    /// Address to listen on (port 0: any free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The CheckResponse to answer with, hex of its encoding.
    #[arg(long, default_value = "")]
    response_hex: String,
}

#[derive(Debug)]
struct Echo {
    response: pb::CheckResponse,
}

#[tonic::async_trait]
impl Verifier for Echo {
    async fn check(&self, _req: Request<pb::CheckRequest>) -> Result<Response<pb::CheckResponse>, Status> {
        Ok(Response::new(self.response.clone()))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse::default()))
    }
}

/// Serves until killed.
pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes = hex::decode(&args.response_hex).context("--response-hex")?;
    let response = pb::CheckResponse::decode(bytes.as_slice()).context("decoding --response-hex")?;
    // The verifier's runtime.
    let runtime = tally_service::runtime::build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        println!("listening on {}", listener.local_addr()?);
        let service = VerifierServer::new(Echo { response }).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
            .await?;
        Ok(())
    })
}
