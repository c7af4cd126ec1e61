//! The token crate's integration tests: golden vectors, glob and property tests, pymacaroons interop.
//! One test binary for the crate: each module below was its own binary,
//! and linking ~50 of them dominated a cold build's time and disk.

mod glob;
mod golden;
mod interop_pymacaroons;
mod properties;
