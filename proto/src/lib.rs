//! Tally's gRPC API, generated at build time from `proto/tally/v1/*.proto`.

#![allow(unreachable_pub, missing_debug_implementations, clippy::all)]

/// `tally.v1`: the authority (and verifier) services and their messages.
pub mod v1 {
    tonic::include_proto!("tally.v1");
}

/// Encoded `FileDescriptorSet` of every Tally proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tally_descriptor");

pub mod metrics_http;
