//! Warns when the build went without `--cfg tokio_unstable`.

fn main() {
    // The services' runtime turns tokio's LIFO slot off only with this cfg
    // (`.cargo/config.toml`); say so when a build went without it.
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_CFG_TOKIO_UNSTABLE").is_none() {
        println!(
            "cargo:warning=built without --cfg tokio_unstable: the services' runtime keeps tokio's LIFO slot (slower; see service/src/runtime.rs)"
        );
    }
}
