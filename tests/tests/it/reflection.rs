//! gRPC reflection on both servers lists exactly the services each serves,
//! in v1 and in v1alpha (grpcio-reflection and older grpcurl speak only
//! v1alpha), against the real binaries.

use std::collections::BTreeSet;

use tally_tests::{Authority, Verifier, VerifierOptions};
use tokio_stream::StreamExt;
use tonic_reflection::pb::{v1, v1alpha};

/// The services reflection `$version` lists at `$addr` (the two versions'
/// messages are the same, in two packages).
macro_rules! services {
    ($version:ident, $addr:expr) => {{
        use $version::server_reflection_client::ServerReflectionClient;
        use $version::server_reflection_request::MessageRequest;
        use $version::server_reflection_response::MessageResponse;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", $addr)).unwrap();
        let mut client = ServerReflectionClient::new(channel.connect().await.unwrap());
        let request = $version::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
        match answers.next().await.expect("an answer").unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<BTreeSet<String>>()
            }
            other => panic!("not a service list: {other:?}"),
        }
    }};
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test]
async fn reflection_lists_what_each_server_serves_in_both_versions() {
    let a = Authority::start().await;
    let want = set(&["tally.v1.Authority", "grpc.health.v1.Health"]);
    assert_eq!(services!(v1, a.addr()), want, "v1 at the authority");
    assert_eq!(services!(v1alpha, a.addr()), want, "v1alpha at the authority");

    let token = a.system_token("verifier", &[]).await;
    let v = Verifier::start(&a.url(), &token, VerifierOptions::default()).await;
    let want = set(&["tally.v1.Verifier", "envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"]);
    assert_eq!(services!(v1, v.addr()), want, "v1 at the verifier");
    assert_eq!(services!(v1alpha, v.addr()), want, "v1alpha at the verifier");
}
