//! Server telemetry shared by the authority and the verifier (feature
//! `telemetry`): logging and OTLP trace setup, trace context across gRPC
//! calls, and per-RPC latency histograms for `/metrics`.

#![warn(clippy::all, missing_debug_implementations, unreachable_pub)]

mod histogram;
mod otel;
mod rpc;

pub use histogram::{BUCKETS, Histogram, header};
pub use otel::{Telemetry, client_span, enabled, init, inject, run_main};
pub use rpc::{RpcLayer, RpcMetrics, RpcService};
