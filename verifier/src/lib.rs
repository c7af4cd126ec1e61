//! Tally's regional verifier: answers `Check` next to the services, from a
//! cache of what the authority vouched for (descendants included), pruned by
//! the streamed revocations, failing closed when the authority goes silent.
//! `run` is the daemon's command line (`Args`).

mod args;
mod breaker;
mod cache;
mod clock;
#[cfg(test)]
mod clock_tests;
mod convert;
mod error;
mod event;
mod ext_authz;
mod grpc;
mod memo;
#[cfg(test)]
mod memo_tests;
mod metrics;
mod negative;
mod outcome;
mod revoked;
mod run;
mod scrape;
mod server;
mod subscription;
mod sync;
mod upstream;
mod verdict;
mod verifier;

pub use args::Args;
pub use cache::{Cache, Cached};
pub use error::Error;
pub use ext_authz::ExtAuthzService;
pub use grpc::VerifierService;
pub use outcome::{Outcome, Source};
pub use run::run;
pub use server::{serve, serve_with};
pub use upstream::{DEFAULT_AUTHORITY_TIMEOUT, Upstream};
pub use verdict::{Verdict, Verified};
pub use verifier::{
    CheckRequest, DEFAULT_BREAKER_FAILURES, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_AUTHORITY_CALLS, DEFAULT_MEMO_CAPACITY,
    Settings, Verifier,
};

impl Verifier {
    /// Marks the verifier as synced with a stream at `epoch` (benchmarks and
    /// tests that fill the cache by hand; a running verifier syncs itself).
    pub fn assume_synced(&self, epoch: &str) {
        self.sync.update(|p| p.epoch = epoch.to_owned());
        self.sync.touch();
        self.sync.set_synced(true);
    }

    /// Cached prefixes now.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }
}
