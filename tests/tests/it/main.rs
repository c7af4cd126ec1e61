//! End-to-end tests: the real binaries started as processes on loopback
//! (attacks, faults, limits, TLS, telemetry).
//! One test binary for the crate: each module below was its own binary,
//! and linking ~50 of them dominated a cold build's time and disk.

mod attack_admission;
mod attack_api_credentials;
mod attack_audit_growth;
mod attack_cross_org;
mod attack_deny_list_growth;
mod attack_glob_cpu;
mod attack_metrics_port;
mod attack_stale_positive;
mod attack_verifier_forge;
mod authority_database;
mod authority_durability;
mod authority_secrets;
mod bad_input_authority;
mod bad_input_verifier;
mod fault_authority_restart;
mod fault_black_hole;
mod fault_flapping;
mod fault_proxy;
mod fault_restore;
mod fault_slow_link;
mod limits;
mod metrics_workload;
mod mtls;
mod postgres_durability;
mod reflection;
mod replicas;
mod secrets_audit;
mod telemetry_traces;
mod tls_config;
mod verifier_breaker;
mod verifier_cache;
mod verifier_epoch;
mod verifier_expiry;
mod verifier_ext_authz;
mod verifier_fail_closed;
mod verifier_forgery;
mod verifier_revocation;
