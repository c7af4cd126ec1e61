//! Compiles the .proto files with protox (a pure-Rust protobuf compiler, so no
//! system `protoc`) and generates tonic/prost code plus a descriptor set for
//! gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/tally/v1/authority.proto", "proto/tally/v1/verifier.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("tally_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().compile_fds(fds)?;

    // Envoy's ext_authz v3 API (the subset the verifier serves), with its own
    // descriptor set so Tally's stays as it was.
    let envoy = [
        "proto/envoy/service/auth/v3/external_auth.proto",
        "proto/envoy/service/auth/v3/attribute_context.proto",
        "proto/envoy/config/core/v3/base.proto",
        "proto/envoy/config/core/v3/address.proto",
        "proto/envoy/type/v3/http_status.proto",
        "proto/google/rpc/status.proto",
    ];
    for f in &envoy {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(&envoy[..1], ["proto"])?;
    std::fs::write(out.join("envoy_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
