//! `cargo xtask codemap` (also the first step of `cargo xtask test`): the code
//! map in ARCHITECTURE.md names every source file, one per line, and nothing
//! that is gone. Source files are the `.rs` files under `src/`, `benches/` and
//! `examples/` and the `build.rs` of every workspace member, and those under
//! `fuzz/src/` and `fuzz/fuzz_targets/`. Integration tests (`*/tests/`) are
//! described per directory, not per file.
//!
//! A map line is `` - `path/from/the/root.rs`: what it holds `` between the
//! `## Code map` heading and the next `## ` heading.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};

/// Where the code map lives, from the workspace root.
const ARCHITECTURE: &str = "ARCHITECTURE.md";

/// Source directories of each workspace member, and its build script.
const MEMBER_DIRS: [&str; 3] = ["src", "benches", "examples"];

/// The fuzz crate is outside the workspace; these are its sources.
const FUZZ_DIRS: [&str; 2] = ["fuzz/src", "fuzz/fuzz_targets"];

pub(crate) fn run() -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let text = std::fs::read_to_string(root.join(ARCHITECTURE)).context("reading ARCHITECTURE.md")?;
    let listed = listed(&text);
    let present = sources(&root)?;
    let missing: Vec<&String> = present.difference(&listed).collect();
    let absent: Vec<&String> = listed.difference(&present).collect();
    if missing.is_empty() && absent.is_empty() {
        return Ok(());
    }
    let mut why = String::from(
        "ARCHITECTURE.md's code map is out of date (one line \"- `path`: what it holds\" per source file):",
    );
    for path in &missing {
        why.push_str(&format!("\n  missing from the map: {path}"));
    }
    for path in &absent {
        why.push_str(&format!("\n  in the map, not in the tree: {path}"));
    }
    bail!(why)
}

/// The paths of the code map's lines.
fn listed(architecture: &str) -> BTreeSet<String> {
    architecture
        .lines()
        .skip_while(|line| line.trim_end() != "## Code map")
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("- `")?.split_once("`:").map(|(path, _)| path.to_string()))
        .collect()
}

/// Every source file the map must name, as a path from the root with `/`.
fn sources(root: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut dirs: Vec<String> = FUZZ_DIRS.iter().map(|d| d.to_string()).collect();
    let mut files = BTreeSet::new();
    for member in members(root)? {
        dirs.extend(MEMBER_DIRS.iter().map(|d| format!("{member}/{d}")));
        if root.join(&member).join("build.rs").is_file() {
            files.insert(format!("{member}/build.rs"));
        }
    }
    for dir in dirs {
        walk(root, &root.join(dir), &mut files)?;
    }
    Ok(files)
}

/// The workspace members named in the root `Cargo.toml` (`members = [...]`).
fn members(root: &Path) -> anyhow::Result<Vec<String>> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let list = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .context("no `members = [...]` in the root Cargo.toml")?;
    Ok(list.split(',').map(|m| m.trim().trim_matches('"').to_string()).filter(|m| !m.is_empty()).collect())
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("walked from the root");
            out.insert(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::listed;

    #[test]
    fn reads_only_the_code_map_lines() {
        let text = "# A\n- `a.rs`: before the map\n## Code map\n\nintro `b.rs`\n- `c/src/d.rs`: holds d\n\
                    ### crate\n- `e.rs`: holds e, not `f.rs`\n-  `g.rs` no colon\n## Invariants\n- `h.rs`: after\n";
        let got: Vec<String> = listed(text).into_iter().collect();
        assert_eq!(got, ["c/src/d.rs", "e.rs"]);
    }
}
