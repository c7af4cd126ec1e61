//! Server telemetry shared by the authority and the verifier: logging and
//! OTLP trace setup, trace context across gRPC calls, and per-RPC latency
//! histograms for `/metrics`.

mod otel;
mod rpc;

pub use otel::{Telemetry, client_span, enabled, init, inject};
pub use rpc::{RpcLayer, RpcMetrics, RpcService};
