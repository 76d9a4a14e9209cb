//! Step-by-step progress for long commands: one line per step with its time,
//! a spinner while a step runs on a terminal, nothing with `--quiet`.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

/// Reports the steps of one command on stderr.
#[derive(Debug)]
pub struct Progress {
    quiet: bool,
    started: Instant,
    steps: Vec<(String, Duration)>,
}

impl Progress {
    /// A reporter; `quiet` prints nothing.
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            started: Instant::now(),
            steps: Vec::new(),
        }
    }

    /// Runs `step`, reporting `label` and how long it took.
    pub fn step<T>(&mut self, label: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
        let spinner = (!self.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner().with_message(label.to_owned());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(80));
            bar
        });
        let start = Instant::now();
        let result = step();
        let elapsed = start.elapsed();
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        self.steps.push((label.to_owned(), elapsed));
        if !self.quiet {
            let mark = if result.is_ok() { "ok" } else { "FAILED" };
            eprintln!("{mark:>6} {label} ({})", millis(elapsed));
        }
        result
    }

    /// Records a step that was timed elsewhere (e.g. an async wait).
    pub fn record(&mut self, label: &str, elapsed: Duration) {
        self.steps.push((label.to_owned(), elapsed));
        if !self.quiet {
            eprintln!("{:>6} {label} ({})", "ok", millis(elapsed));
        }
    }

    /// Prints a line that is not a step (what was found, what was skipped).
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{:>6} {text}", "-");
        }
    }

    /// Prints a closing line with the total time.
    pub fn done(&self, what: &str) {
        if !self.quiet {
            eprintln!("{what} in {}", millis(self.started.elapsed()));
        }
    }

    /// Every finished step with its time (for benchmarks).
    pub fn steps(&self) -> &[(String, Duration)] {
        &self.steps
    }
}

/// `1234 ms` style.
pub fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}
