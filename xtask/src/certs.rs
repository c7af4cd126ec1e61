//! `cargo xtask certs DIR`: a throwaway PKI for running Tally with mTLS
//! (`docs/operations.md`). The files are made by `tally_tests::certs`, the same code
//! the mTLS tests use.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct CertsArgs {
    /// Directory to write the PEM files into (created if missing; an existing set is not overwritten).
    dir: PathBuf,
    /// Another name for the server certificates besides 127.0.0.1 and localhost (a DNS name or an IP address); repeatable.
    #[arg(long = "san", value_name = "NAME")]
    sans: Vec<String>,
}

pub(crate) fn run(args: CertsArgs) -> anyhow::Result<()> {
    let f = tally_tests::certs::generate(&args.dir, &args.sans)?;
    let show = |p: &PathBuf| p.display().to_string();
    println!("wrote a throwaway PKI to {} (the CA keys are not kept):", f.dir.display());
    println!("  CA                          {}", show(&f.ca));
    println!("  authority (server)          {}  {}", show(&f.authority_cert), show(&f.authority_key));
    println!("  verifier  (client)          {}  {}", show(&f.verifier_cert), show(&f.verifier_key));
    println!("  verifier  (Check port)      {}  {}", show(&f.check_cert), show(&f.check_key));
    println!("  operator  (client, CLI)     {}  {}", show(&f.operator_cert), show(&f.operator_key));
    println!("  rogue CA and client (tests) {}  {}  {}", show(&f.rogue_ca), show(&f.rogue_cert), show(&f.rogue_key));
    Ok(())
}
