//! `cargo xtask cycles`: import cycles between the top-level modules of a
//! library crate. Each module of `src/lib.rs` (`mod x;`: `src/x.rs` and
//! everything under `src/x/`) points at the other top-level modules it names
//! (`crate::y`, `use crate::{y, …}`, or `super::y` reaching the crate root),
//! comments, literals and `#[cfg(test)]` items left out; the strongly
//! connected components of that graph with more than one module are the
//! cycles. A plain text scan, no rustc: enough for code written as Tally's is
//! (no `crate` paths built by macros).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The crates checked when none is named.
const DEFAULT_CRATES: &[&str] = &["authority", "verifier"];

#[derive(Debug, clap::Args)]
pub struct CyclesArgs {
    /// Crate directories, relative to the workspace root (default: authority and verifier).
    crates: Vec<PathBuf>,
    /// Leave out the edge `from:to` (one that another change removes).
    #[arg(long = "ignore-edge", value_name = "FROM:TO")]
    ignore_edges: Vec<String>,
}

/// Module → the top-level modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

pub fn run(args: CyclesArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let crates = if args.crates.is_empty() { DEFAULT_CRATES.iter().map(PathBuf::from).collect() } else { args.crates };
    let mut ignored = BTreeSet::new();
    for edge in &args.ignore_edges {
        let Some((from, to)) = edge.split_once(':') else { bail!("--ignore-edge takes FROM:TO, not {edge:?}") };
        ignored.insert((from.to_owned(), to.to_owned()));
    }
    let mut cyclic = Vec::new();
    for krate in crates {
        let mut graph = graph(&root.join(&krate))?;
        for (from, to) in &ignored {
            if graph.get_mut(from).is_some_and(|targets| targets.remove(to)) {
                println!("{}: leaving out {from} -> {to}", krate.display());
            }
        }
        println!("{}: {} top-level modules", krate.display(), graph.len());
        for (module, targets) in &graph {
            let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
            println!("  {module} -> {}", if targets.is_empty() { "-".to_owned() } else { targets.join(", ") });
        }
        let cycles: Vec<Vec<String>> = components(&graph).into_iter().filter(|c| c.len() > 1).collect();
        for cycle in &cycles {
            println!("  CYCLE: {}", cycle.join(" <-> "));
        }
        if cycles.is_empty() {
            println!("  no cycles");
        } else {
            cyclic.push(krate.display().to_string());
        }
    }
    if !cyclic.is_empty() {
        bail!("import cycles between top-level modules in {}", cyclic.join(", "));
    }
    Ok(())
}

/// The check `cargo xtask test` runs first: no cycle in the default crates,
/// said in one line (the graph only when there is one).
pub fn check() -> anyhow::Result<()> {
    let root = crate::workspace_root();
    for krate in DEFAULT_CRATES {
        let graph = graph(&root.join(krate))?;
        if components(&graph).iter().any(|c| c.len() > 1) {
            return run(CyclesArgs { crates: vec![PathBuf::from(krate)], ignore_edges: Vec::new() });
        }
    }
    println!("xtask: no import cycles between the top-level modules of {}", DEFAULT_CRATES.join(", "));
    Ok(())
}

/// The module graph of the crate in `dir`.
fn graph(dir: &Path) -> anyhow::Result<Graph> {
    let src = dir.join("src");
    let lib = read(&src.join("lib.rs"))?;
    let modules: BTreeSet<String> = declared_modules(&without_cfg_test(&strip(&lib)));
    let mut graph = Graph::new();
    for module in &modules {
        let mut files = Vec::new();
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push((file, 1));
        }
        collect_files(&src.join(module), 1, &mut files)?;
        let mut names = BTreeSet::new();
        for (file, depth) in files {
            names.extend(references(&without_cfg_test(&strip(&read(&file)?)), depth));
        }
        names.retain(|n| n != module && modules.contains(n));
        graph.insert(module.clone(), names);
    }
    Ok(graph)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The `.rs` files under `dir`, each with its depth below the crate root
/// (`x/mod.rs` is at 1, like `x.rs`; `x/y.rs` at 2).
fn collect_files(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, usize)>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, depth + 1, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let own = if path.file_name().is_some_and(|n| n == "mod.rs") { depth } else { depth + 1 };
            out.push((path, own));
        }
    }
    Ok(())
}

/// `mod x;` declarations (not inline modules).
fn declared_modules(lib: &str) -> BTreeSet<String> {
    let mut statements: Vec<&str> = lib.split(';').collect();
    statements.pop(); // what follows the last `;` is no declaration
    statements
        .into_iter()
        .filter_map(|statement| {
            let statement = statement.rsplit(['{', '}']).next().unwrap_or(statement);
            match statement.split_whitespace().collect::<Vec<_>>()[..] {
                [.., "mod", name] if is_ident(name) => Some(name.to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// `src` with comments blanked and string and character literals emptied
/// (line breaks kept).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let newlines = |from: usize, to: usize| b[from..to.min(b.len())].iter().filter(|&&c| c == b'\n').count();
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let (start, mut depth) = (i, 0usize);
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.extend(std::iter::repeat_n(b'\n', newlines(start, i)));
        } else if let Some(hashes) = raw_string_start(b, i) {
            let start = i;
            let open = rest.iter().position(|&c| c == b'"').unwrap_or(0) + 1;
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            i += open;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i = (i + close.len()).min(b.len());
            out.extend_from_slice(b"\"\"");
            out.extend(std::iter::repeat_n(b'\n', newlines(start, i)));
        } else if b[i] == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            out.extend_from_slice(b"\"\"");
            out.extend(std::iter::repeat_n(b'\n', newlines(start, i)));
        } else if let Some(len) = char_literal(rest) {
            out.extend_from_slice(b"' '");
            i += len;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The number of `#`s of a raw string (`r"`, `r#"`, `br#"`, …) starting at `i`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a character literal at the start of `rest` (not a lifetime).
fn char_literal(rest: &[u8]) -> Option<usize> {
    if rest.first() != Some(&b'\'') {
        return None;
    }
    if rest.get(1) == Some(&b'\\') {
        // `'\''`, `'\n'`, `'\x7f'`, `'\u{…}'`: the escaped character, then up to the quote.
        let end = rest.get(3..)?.iter().position(|&c| c == b'\'')?;
        return (end <= 8).then_some(end + 4);
    }
    // One character of up to four UTF-8 bytes, then the closing quote.
    let width = match rest.get(1)? {
        c if *c < 0x80 => 1,
        c if *c >= 0xf0 => 4,
        c if *c >= 0xe0 => 3,
        _ => 2,
    };
    (rest.get(1 + width) == Some(&b'\'') && rest[1] != b'\'').then_some(width + 2)
}

/// `src` without the items that follow `#[cfg(test)]` (each up to its first
/// `;` outside braces, or the end of its braced body).
fn without_cfg_test(src: &str) -> String {
    const ATTRIBUTE: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(at) = rest.find(ATTRIBUTE) {
        out.push_str(&rest[..at]);
        let item = &rest[at + ATTRIBUTE.len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, c) in item.char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.extend(std::iter::repeat_n('\n', item[..end].matches('\n').count()));
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level module names a file at `depth` names.
fn references(src: &str, depth: usize) -> BTreeSet<String> {
    let tokens = tokens(src);
    let token = |k: usize| tokens.get(k).map_or("", String::as_str);
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let start = i;
        i += 1;
        if start > 0 && matches!(token(start - 1), "::" | "$") {
            continue;
        }
        // `crate::`, or as many `super::` as reach the crate root.
        let root = match token(start) {
            "crate" if token(start + 1) == "::" => start + 2,
            "super" => {
                let mut next = start;
                while token(next) == "super" && token(next + 1) == "::" {
                    next += 2;
                }
                i = next.max(i);
                if (next - start) / 2 < depth {
                    continue;
                }
                next
            }
            _ => continue,
        };
        match token(root) {
            "{" => names.extend(group_heads(&tokens, root)),
            name if is_ident(name) => {
                names.insert(name.to_owned());
            }
            _ => {}
        }
    }
    names
}

/// The first segment of each item of the `{ … }` group opening at `open`.
fn group_heads(tokens: &[String], open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect = false;
    for token in &tokens[open..] {
        match token.as_str() {
            "{" => {
                depth += 1;
                expect = depth == 1;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => expect = true,
            t if depth == 1 && expect && is_ident(t) => {
                heads.push(t.to_owned());
                expect = false;
            }
            _ => expect = false,
        }
    }
    heads
}

fn is_ident(t: &str) -> bool {
    t.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(k, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = k + d.len_utf8();
                chars.next();
            }
            out.push(src[start..end].to_owned());
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            out.push("::".to_owned());
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out
}

/// Strongly connected components (Tarjan), each sorted.
fn components(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                component.sort();
                self.out.push(component);
            }
        }
    }
    let mut t = Tarjan { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_outside_comments_literals_and_tests() {
        let src = r#"
            use crate::a::X;
            use crate::{b, c::{Y, Z}, self as me};
            // use crate::commented;
            /* crate::blocked */
            const S: &str = "crate::quoted";
            const R: &str = r"crate::raw";
            fn f<'x>(_: &'x u8) -> char { let _ = crate::d::f(); let _ = '\''; '}' }
            #[cfg(test)]
            mod tests { use crate::tested; }
            use super::e;
            use super::super::g;
        "#;
        let names = references(&without_cfg_test(&strip(src)), 2);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names, ["a", "b", "c", "d", "g", "self"]);
    }

    #[test]
    fn cycles_are_the_components_of_more_than_one_module() {
        let edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "d")];
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph.entry(from.to_owned()).or_default().insert(to.to_owned());
            graph.entry(to.to_owned()).or_default();
        }
        let cycles: Vec<Vec<String>> = components(&graph).into_iter().filter(|c| c.len() > 1).collect();
        assert_eq!(cycles, [["a", "b", "c"]]);
    }

    #[test]
    fn declared_modules_not_inline_ones() {
        let lib = "mod a;\npub mod b;\npub(crate) mod c;\n#[cfg(test)]\nmod t { }\nmod inline { fn x() {} }";
        let modules: Vec<String> = declared_modules(&without_cfg_test(lib)).into_iter().collect();
        assert_eq!(modules, ["a", "b", "c"]);
    }
}
