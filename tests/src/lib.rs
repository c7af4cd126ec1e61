//! End-to-end test harness: the real binaries started as processes on
//! loopback (127.0.0.1, port 0), their output captured, and polling helpers
//! in place of sleeps. One test file per behaviour under `tests/`.

mod authority;
mod binary;
pub mod certs;
mod child;
mod poll;
pub mod postgres;

pub use authority::{Authority, AuthorityOptions, TEST_KEK_HEX, bearer};
pub use binary::{AUTHORITY, BIN_DIR_ENV, Bin, binary, binary_in, cargo, profile_dir, workspace_root};
pub use certs::CertFiles;
pub use child::{Child, ECHO_ENV, Lines};
pub use poll::{DEADLINE, POLL_INTERVAL, eventually, try_eventually};
pub use postgres::{PgCluster, TestDb, TestStore};

mod verifier;
pub use verifier::{UpstreamTls, VERIFIER, Verifier, VerifierOptions, metric, scrape};
mod cluster;
pub use cluster::Cluster;
pub mod bad_input;
mod history;
pub mod raw;
pub use history::{CheckLoad, CheckRecord, History, RevokeRecord, Tracked};
pub mod proxy;
pub use proxy::{Mode, Proxy};
