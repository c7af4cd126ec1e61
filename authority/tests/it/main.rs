//! The authority's in-process tests: its gRPC service on loopback over a real SQLite file.
//! One test binary for the crate: each module below was its own binary,
//! and linking ~50 of them dominated a cold build's time and disk.

mod api_tokens;
mod audit;
mod common;
mod hostile_requests;
mod mint_and_verify;
mod orgs_and_keys;
mod revoke;
mod storage_fault;
mod stream;
mod verifier_cannot_forge;
