//! `tally`: the command-line interface. Parses arguments and hands over to
//! [`cli::run`]; the exit code is the command's verdict.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("tally: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}
