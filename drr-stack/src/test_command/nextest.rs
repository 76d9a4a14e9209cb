//! Running the tests under cargo-nextest: a nextest profile of drr's own
//! (handed over with `--tool-config-file`) that excludes the tests of
//! missing requirements, so nextest counts them as skipped, and writes a
//! JUnit report; and `--repeat N`, which runs the tests N times (nextest's
//! stress mode where the installed nextest has it) and tallies failures
//! per test from that report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{TestOptions, cargo, invoke, test_args};
use crate::command::Command;
use crate::testing::Requirement;

/// The profile `cargo xtask test` runs nextest with.
const PROFILE: &str = "drr";

/// Runs nextest for `options`; returns its exit code.
pub(super) fn run(
    root: &Path,
    target: &Path,
    options: &TestOptions,
    skipped: &[Requirement],
    vars: &[(&str, String)],
) -> Result<i32> {
    let (user_profile, runner_args) = split_profile(&options.runner_args);
    let config = tool_config(
        user_profile.as_deref().unwrap_or("default"),
        skipped,
        options.repeat.is_some(),
    );
    let config_path = target.join("drr").join("nextest.toml");
    crate::codegen::write_atomically(&config_path, &config)?;
    let junit = junit_paths(root, target);

    let mut args: Vec<String> = vec![
        "nextest".into(),
        "run".into(),
        "--tool-config-file".into(),
        format!("drr:{}", config_path.display()),
        "--profile".into(),
        PROFILE.into(),
    ];
    args.extend(runner_args);
    if !options.test_args.is_empty() {
        // A name filter may match only doctests, which run next: no match
        // among nextest's tests is no failure.
        args.push("--no-tests=warn".into());
    }
    let test_args = test_args(
        &TestOptions {
            test_args: options.test_args.clone(),
            ..TestOptions::default()
        },
        &[],
    );
    let Some(times) = options.repeat else {
        args.extend(test_args);
        return invoke(root, args, vars, options.quiet);
    };

    let mut tally = Tally::default();
    let mut code = 0;
    if supports_stress() {
        args.extend(["--stress-count".into(), times.to_string()]);
        args.extend(test_args);
        remove_reports(&junit);
        code = invoke(root, args, vars, options.quiet)?;
        tally.add(&read_report(&junit)?)?;
    } else {
        args.extend(test_args);
        for run in 1..=times {
            eprintln!("run {run} of {times}");
            remove_reports(&junit);
            let run_code = invoke(root, args.clone(), vars, options.quiet)?;
            if code == 0 {
                code = run_code;
            }
            tally.add(&read_report(&junit)?)?;
        }
    }
    eprint!("{}", tally.summary(times));
    Ok(if tally.failures() > 0 && code == 0 {
        1
    } else {
        code
    })
}

/// The profile file: the user's profile (`-P`), minus the tests of missing
/// requirements, with twice as many test threads as CPUs and a JUnit
/// report; with `repeat`, every test runs even after a failure.
fn tool_config(inherits: &str, skipped: &[Requirement], repeat: bool) -> String {
    let mut out =
        String::from("# Written by `cargo xtask test` for this run; changes are overwritten.\n");
    let _ = writeln!(out, "[profile.{PROFILE}]");
    let _ = writeln!(out, "inherits = {}", toml_string(inherits));
    if !skipped.is_empty() {
        let filters: Vec<String> = skipped.iter().map(Requirement::filterset).collect();
        let filter = format!("not ({})", filters.join(" | "));
        let _ = writeln!(out, "default-filter = {}", toml_string(&filter));
    }
    if repeat {
        let _ = writeln!(out, "fail-fast = false");
    }
    let _ = writeln!(out, "test-threads = {}", test_threads());
    let _ = writeln!(out, "\n[profile.{PROFILE}.junit]\npath = \"junit.xml\"");
    out
}

/// Tests that need the stack spend most of their time waiting for
/// replication delays, not computing: run three times as many as there are
/// CPUs (`--test-threads` on the command line still wins). On two cores,
/// the suite took 170 s with four threads and 117 s with six.
fn test_threads() -> usize {
    3 * std::thread::available_parallelism().map_or(1, usize::from)
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The user's `-P NAME` / `--profile NAME` / `--profile=NAME`, and the other
/// arguments.
fn split_profile(args: &[String]) -> (Option<String>, Vec<String>) {
    let mut profile = None;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "-P" || arg == "--profile" {
            profile = args.next().cloned();
        } else if let Some(name) = arg.strip_prefix("--profile=") {
            profile = Some(name.to_owned());
        } else {
            rest.push(arg.clone());
        }
    }
    (profile, rest)
}

/// Whether the installed nextest has stress mode (`--stress-count`).
fn supports_stress() -> bool {
    Command::new(cargo())
        .args(["nextest", "run", "--help"])
        .read()
        .is_ok_and(|help| help.contains("--stress-count"))
}

/// Where nextest may write the profile's JUnit report: under the target
/// directory, or (older nextest) under the workspace's `target/`.
fn junit_paths(root: &Path, target: &Path) -> Vec<PathBuf> {
    let mut paths = vec![target.join("nextest").join(PROFILE).join("junit.xml")];
    let legacy = root
        .join("target")
        .join("nextest")
        .join(PROFILE)
        .join("junit.xml");
    if !paths.contains(&legacy) {
        paths.push(legacy);
    }
    paths
}

fn remove_reports(paths: &[PathBuf]) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

fn read_report(paths: &[PathBuf]) -> Result<String> {
    let path = paths.iter().find(|p| p.is_file()).with_context(|| {
        format!(
            "nextest wrote no JUnit report (looked for {}); is cargo-nextest older than 0.9.20?",
            paths[0].display()
        )
    })?;
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs and failures per test over one or more JUnit reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// `binary test` → (runs, failures).
    tests: BTreeMap<String, (u32, u32)>,
}

impl Tally {
    /// Adds every test case of a nextest JUnit report (a stress run's
    /// report has one test suite per binary and iteration).
    pub fn add(&mut self, junit: &str) -> Result<()> {
        let doc = roxmltree::Document::parse(junit).context("nextest's JUnit report is not XML")?;
        for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
            let binary = case.attribute("classname").unwrap_or("");
            let name = case.attribute("name").unwrap_or("");
            let failed = case
                .children()
                .any(|c| c.has_tag_name("failure") || c.has_tag_name("error"));
            let entry = self.tests.entry(format!("{binary} {name}")).or_default();
            entry.0 += 1;
            entry.1 += u32::from(failed);
        }
        Ok(())
    }

    /// Failed test runs in all.
    pub fn failures(&self) -> u32 {
        self.tests.values().map(|(_, f)| f).sum()
    }

    /// A summary for `runs` repetitions: the totals, then each test that
    /// failed at least once with its failure count, most failures first.
    pub fn summary(&self, runs: u32) -> String {
        let total: u32 = self.tests.values().map(|(r, _)| r).sum();
        let mut failed: Vec<(&String, u32, u32)> = self
            .tests
            .iter()
            .filter(|(_, (_, f))| *f > 0)
            .map(|(name, (r, f))| (name, *r, *f))
            .collect();
        failed.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
        let mut out = format!(
            "repeat: {runs} runs of {} tests ({total} test runs): ",
            self.tests.len()
        );
        if failed.is_empty() {
            out.push_str("0 failures\n");
            return out;
        }
        let _ = writeln!(
            out,
            "{} failures in {} tests",
            self.failures(),
            failed.len()
        );
        for (name, runs, failures) in failed {
            let _ = writeln!(out, "  {failures}/{runs} failed  {name}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::DOCKER;

    #[test]
    fn the_profile_inherits_the_users_and_skips_missing_requirements() {
        let config = tool_config("ci", &[DOCKER], true);
        assert!(
            config.contains("[profile.drr]\ninherits = \"ci\"\n"),
            "{config}"
        );
        assert!(
            config.contains(r#"default-filter = "not (test(/(^|::)requires_docker::/))""#),
            "{config}"
        );
        assert!(config.contains("fail-fast = false"), "{config}");
        assert!(
            config.contains(&format!("test-threads = {}", test_threads())),
            "{config}"
        );
        assert!(
            config.contains("[profile.drr.junit]\npath = \"junit.xml\""),
            "{config}"
        );
        let plain = tool_config("default", &[], false);
        assert!(!plain.contains("default-filter") && !plain.contains("fail-fast"));
    }

    #[test]
    fn the_users_profile_is_taken_out_of_the_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            split_profile(&args(&["-p", "x", "-P", "ci", "-E", "test(a)"])),
            (Some("ci".into()), args(&["-p", "x", "-E", "test(a)"]))
        );
        assert_eq!(
            split_profile(&args(&["--profile=ci"])),
            (Some("ci".into()), vec![])
        );
        assert_eq!(split_profile(&args(&["--no-capture"])).0, None);
    }

    #[test]
    fn a_stress_report_tallies_failures_per_test() {
        let report = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1">
    <testsuite name="nx@stress-0" tests="2" failures="1">
        <testcase name="tests::a" classname="nx" time="0.01"/>
        <testcase name="tests::b" classname="nx" time="0.1"><failure message="boom">x</failure></testcase>
    </testsuite>
    <testsuite name="nx@stress-1" tests="2" failures="0">
        <testcase name="tests::a" classname="nx" time="0.01"/>
        <testcase name="tests::b" classname="nx" time="0.1"/>
    </testsuite>
</testsuites>"#;
        let mut tally = Tally::default();
        tally.add(report).unwrap();
        assert_eq!(tally.failures(), 1);
        assert_eq!(
            tally.summary(2),
            "repeat: 2 runs of 2 tests (4 test runs): 1 failures in 1 tests\n  1/2 failed  nx tests::b\n"
        );
        let mut clean = Tally::default();
        clean
            .add(&report.replace("<failure message=\"boom\">x</failure>", ""))
            .unwrap();
        assert_eq!(
            clean.summary(2),
            "repeat: 2 runs of 2 tests (4 test runs): 0 failures\n"
        );
        assert!(Tally::default().add("not xml").is_err());
    }
}
