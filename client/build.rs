//! Compiles the example gRPC service's .proto (used only by
//! `examples/grpc_service.rs` and its test) with protox, so no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "examples/proto/orders.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], ["examples/proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
