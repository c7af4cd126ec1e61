//! Criterion benchmarks of the token hot paths.
fn main() {}
