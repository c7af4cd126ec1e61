//! A progress bar while the bench runs (on a terminal), plain lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Steps of the run, one bar.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    tty: bool,
}

impl Progress {
    pub(crate) fn new(steps: u64) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty { ProgressBar::new(steps) } else { ProgressBar::hidden() };
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar, tty }
    }

    /// Starts a step.
    pub(crate) fn step(&self, what: &str) {
        self.bar.set_message(what.to_owned());
        if !self.tty {
            eprintln!("bench: {what}…");
        }
    }

    /// Ends a step with a line of result.
    pub(crate) fn done(&self, line: &str) {
        self.bar.inc(1);
        self.note(line);
    }

    /// A line of result, outside any step.
    pub(crate) fn note(&self, line: &str) {
        if self.tty {
            self.bar.println(format!("  {line}"));
        } else {
            eprintln!("  {line}");
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
