//! `cargo xtask fuzz --time N [--target T]`: runs the cargo-fuzz targets of
//! `fuzz/` one after another, each for N seconds, from its working corpus
//! `fuzz/corpus/<target>` (git-ignored) plus the committed seeds
//! `fuzz/seeds/<target>`, then prints one summary line per target from
//! libFuzzer's final statistics. Fails when a target crashed, naming the
//! input libFuzzer saved. The full output of each run goes to
//! `target/fuzz-logs/<target>.log`; the terminal gets all but the per-input
//! lines.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};

/// Every target, in the order they run.
const TARGETS: [&str; 6] =
    ["token_decode", "caveat_parse", "bundle_parse", "check_path", "glob_match", "request_fields"];

/// `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct FuzzArgs {
    /// Seconds of fuzzing per target (building comes on top).
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Only this target.
    #[arg(long, value_parser = TARGETS)]
    target: Option<String>,
    /// Sanitizer to build with (`none` where AddressSanitizer does not work).
    #[arg(long, default_value = "address", value_parser = ["address", "none"])]
    sanitizer: String,
}

/// What one run reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Stats {
    runs: Option<u64>,
    exec_per_sec: Option<u64>,
    cov: Option<u64>,
    features: Option<u64>,
    corpus: Option<String>,
    peak_rss_mb: Option<u64>,
    /// The input a crash (or leak, timeout, OOM) was saved to.
    artifact: Option<String>,
}

impl Stats {
    /// Reads one line of libFuzzer's output into the statistics.
    fn read_line(&mut self, line: &str) {
        if let Some((key, value)) = line.strip_prefix("stat::").and_then(|s| s.split_once(':')) {
            let value = value.trim().parse().ok();
            match key {
                "number_of_executed_units" => self.runs = value,
                "average_exec_per_sec" => self.exec_per_sec = value,
                "peak_rss_mb" => self.peak_rss_mb = value,
                _ => {}
            }
        } else if line.starts_with('#') && line.contains(" cov: ") {
            // `#123	pulse  cov: 45 ft: 67 corp: 8/910b lim: 4 exec/s: 11 rss: 12Mb`: keep the latest.
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                match word {
                    "cov:" => self.cov = words.next().and_then(|v| v.parse().ok()),
                    "ft:" => self.features = words.next().and_then(|v| v.parse().ok()),
                    "corp:" => self.corpus = words.next().map(str::to_owned),
                    _ => {}
                }
            }
        } else if let Some(rest) = line.split_once("Test unit written to ").map(|(_, r)| r) {
            self.artifact = rest.split_whitespace().next().map(str::to_owned);
        }
    }

    /// `1234 runs in 600 s (2 exec/s), cov 5 ft 6, corpus 7 inputs (8Kb), peak RSS 9 MB, crash: no`
    fn summary(&self, target: &str, seconds: u64) -> String {
        let n = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
        let corpus = match self.corpus.as_deref().and_then(|c| c.split_once('/')) {
            Some((inputs, size)) => format!("{inputs} inputs ({size})"),
            None => "?".to_owned(),
        };
        format!(
            "{target}: {} runs in {seconds} s ({} exec/s), cov {} ft {}, corpus {corpus}, peak RSS {} MB, crash: {}",
            n(self.runs),
            n(self.exec_per_sec),
            n(self.cov),
            n(self.features),
            n(self.peak_rss_mb),
            self.artifact.as_deref().unwrap_or("no"),
        )
    }
}

/// Lines shown on the terminal: not the one-per-new-input ones.
fn worth_showing(line: &str) -> bool {
    !(line.starts_with('#') && (line.contains("\tNEW ") || line.contains("\tREDUCE ")))
}

pub(crate) fn run(args: FuzzArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new(&cargo).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    ensure!(installed, "cargo-fuzz is not installed: run `cargo install cargo-fuzz --locked` and try again");

    let targets: Vec<&str> = match &args.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut summaries = Vec::new();
    let mut crashes = Vec::new();
    let several = targets.len() > 1;
    for target in targets {
        let (stats, seconds) = run_target(&root, &cargo, target, &args, &logs.join(format!("{target}.log")))?;
        let line = stats.summary(target, seconds);
        if several {
            // Progress as each target ends; the summary of them all follows on stdout.
            eprintln!("fuzz: {line}");
        }
        summaries.push(line);
        if let Some(artifact) = stats.artifact {
            crashes.push(format!(
                "{target}: {artifact} (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run {target} {artifact})"
            ));
        }
    }
    println!("{}", summaries.join("\n"));
    if !crashes.is_empty() {
        bail!("fuzzing found crashes:\n{}", crashes.join("\n"));
    }
    Ok(())
}

/// Runs one target; returns its statistics and how long libFuzzer ran.
fn run_target(
    root: &Path,
    cargo: &std::ffi::OsStr,
    target: &str,
    args: &FuzzArgs,
    log_path: &Path,
) -> anyhow::Result<(Stats, u64)> {
    let corpus = Path::new("fuzz/corpus").join(target);
    let seeds = Path::new("fuzz/seeds").join(target);
    std::fs::create_dir_all(root.join(&corpus)).with_context(|| format!("creating {}", corpus.display()))?;
    eprintln!("fuzz: {target} for {} s (log: {})", args.time, log_path.display());
    let mut child = Command::new(cargo)
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "--sanitizer", &args.sanitizer, target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", args.time))
        .arg("-print_final_stats=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cargo fuzz run")?;

    // Both streams, line by line, into one channel: libFuzzer writes to
    // stderr, cargo-fuzz's hints after a crash to stdout.
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ]
    .into_iter()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                if tx.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);

    let mut log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut stats = Stats::default();
    let mut started: Option<Instant> = None;
    for line in rx {
        writeln!(log, "{line}").context("writing the fuzz log")?;
        if started.is_none() && line.starts_with("INFO: Seed:") {
            started = Some(Instant::now());
        }
        stats.read_line(&line);
        if worth_showing(&line) {
            eprintln!("{line}");
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().context("waiting for cargo fuzz run")?;
    let seconds = started.map_or(0, |s| s.elapsed().as_secs());
    if !status.success() && stats.artifact.is_none() {
        bail!("cargo fuzz run {target} failed ({status}) without saving an input: see {}", log_path.display());
    }
    Ok((stats, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_final_statistics() {
        let out = "INFO: Seed: 42\n\
            #2\tINITED cov: 10 ft: 11 corp: 3/40b exec/s: 0 rss: 30Mb\n\
            #1024\tNEW    cov: 12 ft: 14 corp: 4/52b lim: 4 exec/s: 0 rss: 31Mb L: 4/4 MS: 1 ChangeBit-\n\
            #8258948\tDONE   cov: 2671 ft: 10094 corp: 1528/266Kb lim: 4096 exec/s: 13516 rss: 542Mb\n\
            Done 8258948 runs in 611 second(s)\n\
            stat::number_of_executed_units: 8258948\n\
            stat::average_exec_per_sec:     13516\n\
            stat::new_units_added:          1911\n\
            stat::peak_rss_mb:              542\n";
        let mut stats = Stats::default();
        out.lines().for_each(|l| stats.read_line(l));
        assert_eq!(
            stats.summary("token_decode", 611),
            "token_decode: 8258948 runs in 611 s (13516 exec/s), cov 2671 ft 10094, \
             corpus 1528 inputs (266Kb), peak RSS 542 MB, crash: no"
        );
    }

    #[test]
    fn reads_a_crash() {
        let mut stats = Stats::default();
        stats.read_line("==1234== ERROR: libFuzzer: deadly signal");
        stats.read_line(
            "artifact_prefix='/w/fuzz/artifacts/check_path/'; Test unit written to \
             /w/fuzz/artifacts/check_path/crash-0123abcd",
        );
        assert_eq!(stats.artifact.as_deref(), Some("/w/fuzz/artifacts/check_path/crash-0123abcd"));
        assert!(stats.summary("check_path", 3).ends_with("crash: /w/fuzz/artifacts/check_path/crash-0123abcd"));
    }

    #[test]
    fn hides_only_per_input_lines() {
        assert!(!worth_showing("#1024\tNEW    cov: 12 ft: 14 corp: 4/52b"));
        assert!(!worth_showing("#1100\tREDUCE cov: 12 ft: 14 corp: 4/50b"));
        assert!(worth_showing("#65536\tpulse  cov: 12 ft: 14 corp: 4/52b"));
        assert!(worth_showing("==1234== ERROR: libFuzzer: deadly signal"));
    }
}
