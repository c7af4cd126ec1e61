//! The SDK and CLI tests: the `tally` binary and the tower layer against in-process servers.
//! One test binary for the crate: each module below was its own binary,
//! and linking ~50 of them dominated a cold build's time and disk.

mod cli_online;
mod cli_tls;
mod cli_token;
mod layer_examples;
mod support;
