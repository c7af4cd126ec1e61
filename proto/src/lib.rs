//! Tally's gRPC API, generated at build time from `proto/tally/v1/*.proto`,
//! with the two small pieces every side of it shares: the reason conversion
//! and the TLS files (`tls`). Lints are relaxed on the generated modules only.
//! The servers' plumbing (runtime, telemetry, metrics, the TLS accept loop)
//! is in `tally-service`.

/// `tally.v1`: the authority (and verifier) services and their messages.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("tally.v1");
}

mod reason;
pub use reason::reason_from_wire;

/// Encoded `FileDescriptorSet` of every Tally proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tally_descriptor");

/// The subset of Envoy's API behind `envoy.service.auth.v3.Authorization/Check`
/// (ext_authz, transport API V3): Envoy's packages and field numbers.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod envoy {
    pub mod config {
        pub mod core {
            pub mod v3 {
                tonic::include_proto!("envoy.config.core.v3");
            }
        }
    }
    pub mod r#type {
        pub mod v3 {
            tonic::include_proto!("envoy.r#type.v3");
        }
    }
    pub mod service {
        pub mod auth {
            pub mod v3 {
                tonic::include_proto!("envoy.service.auth.v3");
            }
        }
    }
}

/// `google.rpc.Status`, as ext_authz's `CheckResponse` carries it.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

/// Encoded `FileDescriptorSet` of the Envoy ext_authz subset, for gRPC reflection.
pub const ENVOY_FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("envoy_descriptor");

mod error;
pub mod tls;

pub use error::Error;
