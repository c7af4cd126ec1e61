//! OpenTelemetry across the services: with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! pointing at an OTLP receiver in this test, a Check that has to ask the
//! authority is one trace: the verifier's Check span, its client span for
//! Verify, and the authority's Verify span under it (the W3C trace context
//! travels in gRPC metadata). No span carries token bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tally_proto::v1::Source;
use tally_tests::{Authority, AuthorityOptions, DEADLINE, Verifier, VerifierOptions, try_eventually};
use tally_token::{Limits, Macaroon};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// A received span with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: opentelemetry_proto::tonic::trace::v1::Span,
}

/// An OTLP/gRPC trace receiver that keeps everything it is sent.
#[derive(Debug, Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Received { service: service.clone(), span });
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn start_receiver() -> (Receiver, SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    let service = TraceServiceServer::new(receiver.clone());
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (receiver, addr, task)
}

fn find<'a>(spans: &'a [Received], service: &str, name: &str, kind: SpanKind) -> Option<&'a Received> {
    spans.iter().find(|r| r.service == service && r.span.name == name && r.span.kind == kind as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_asks_the_authority_is_one_trace_across_both_services() {
    let (receiver, addr, receiver_task) = start_receiver().await;
    let env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), format!("http://{addr}")),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let authority = Authority::start_with(AuthorityOptions { env: env.clone(), ..Default::default() }).await;
    authority.create_org("acme").await;
    let token = authority.mint("acme", &["action in read"]).await.token;
    let verifier_token = authority.system_token("verifier", &[]).await;
    let verifier =
        Verifier::start(&authority.url(), &verifier_token, VerifierOptions { env, ..Default::default() }).await;
    verifier.wait_synced().await;

    let answer = verifier.check(&token, "read").await;
    assert!(answer.allowed, "{answer:?}");
    assert_eq!(answer.source(), Source::Authority);

    let (check, call, served) = try_eventually(DEADLINE, || async {
        let spans = receiver.spans.lock().unwrap().clone();
        let check = find(&spans, "tally-verifier", "tally.v1.Verifier/Check", SpanKind::Server)
            .ok_or("no Check server span from the verifier yet")?;
        let call = find(&spans, "tally-verifier", "tally.v1.Authority/Verify", SpanKind::Client)
            .ok_or("no Verify client span from the verifier yet")?;
        let served = find(&spans, "tally-authority", "tally.v1.Authority/Verify", SpanKind::Server)
            .ok_or("no Verify server span from the authority yet")?;
        Ok::<_, &str>((check.clone(), call.clone(), served.clone()))
    })
    .await
    .unwrap();
    // One trace: Check → its Verify call → the authority serving it.
    assert_eq!(check.span.trace_id.len(), 16);
    assert_eq!(call.span.trace_id, check.span.trace_id);
    assert_eq!(served.span.trace_id, check.span.trace_id);
    assert_eq!(call.span.parent_span_id, check.span.span_id);
    assert_eq!(served.span.parent_span_id, call.span.span_id);
    assert!(check.span.parent_span_id.is_empty(), "the Check had no caller context: a root span");

    // No token, signature or key in any span: names, attributes, events.
    let macaroon = Macaroon::from_text(&token, &Limits::default()).unwrap();
    let signature = macaroon.signature();
    let secrets =
        [token.clone(), verifier_token.clone(), authority.bootstrap().to_owned(), hex::encode(signature.as_bytes())];
    let spans = receiver.spans.lock().unwrap().clone();
    for r in &spans {
        let text = format!("{:?}", r.span);
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a span carries a secret: {text}");
        }
        assert!(!text.contains("tly_"), "a span carries token text: {text}");
    }
    receiver_task.abort();
}
