//! `cargo xtask test`: the README's test command.

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {}

pub(crate) fn run(_args: TestArgs) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
