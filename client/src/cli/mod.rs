//! The `tally` command tree and its exit-code convention: 0 success, 1 a
//! negative verdict (for example an invalid token), 2 usage or parse errors.

mod input;
mod token;

use clap::{Parser, Subcommand};

/// Tally: macaroon tokens that anyone can attenuate and every region can revoke.
#[derive(Debug, Parser)]
#[command(name = "tally", version, about)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline token commands: mint, attenuate, discharge, bundle, inspect, verify.
    #[command(subcommand)]
    Token(token::TokenCommand),
}

/// Exit code for a negative verdict.
pub(crate) const EXIT_INVALID: u8 = 1;
/// Exit code for usage and parse errors (as clap uses).
pub(crate) const EXIT_USAGE: u8 = 2;

/// A failed command: the one-line message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self { code: EXIT_USAGE, message: message.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self { code: EXIT_INVALID, message: message.into() }
    }
}

pub(crate) fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Command::Token(cmd) => token::run(cmd),
    }
}
