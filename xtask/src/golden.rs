//! `cargo xtask golden`: token golden vectors.

pub(crate) fn run(_check: bool) -> anyhow::Result<()> {
    anyhow::bail!("golden vectors: not written yet")
}
