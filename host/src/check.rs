//! `muc-host check`: plays scansion scripts against a plugin in the test host and reports, and
//! optionally compares each script's result with a checked-in expectation.
//!
//! Expectations file: one line per script, `NAME pass` or `NAME diverges: REASON`; `#` starts a
//! comment. A script with no line is an error, as is a line for a script that was not run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::extensions::{Compiled, ExtensionCompiler};
use crate::runtime::CompiledPlugin;
use crate::scansion::network::NetworkHarness;
use crate::scansion::{runner, script};
use crate::testhost::TestHost;

pub struct ScriptResult {
    pub name: String,
    /// `Err` holds the failure, already described with the script's name and line.
    pub outcome: Result<(), String>,
}

/// Runs each script in a fresh test host (fresh store, fresh clock), with `extensions` (compiled
/// by the compiler beside them) switched on in every room.
pub fn run_scripts(
    plugin: &CompiledPlugin,
    extensions: Option<(&ExtensionCompiler, &[Compiled])>,
    scripts: &[PathBuf],
) -> Vec<ScriptResult> {
    scripts
        .iter()
        .map(|path| ScriptResult {
            name: file_name(path),
            outcome: run_one(plugin, extensions, path),
        })
        .collect()
}

fn run_one(
    plugin: &CompiledPlugin,
    extensions: Option<(&ExtensionCompiler, &[Compiled])>,
    path: &Path,
) -> Result<(), String> {
    let script = script::load(path).map_err(|e| format!("{}: {e:#}", path.display()))?;
    let host = match extensions {
        Some((compiler, extensions)) => {
            TestHost::with_extensions(plugin.clone(), compiler, extensions)
        }
        None => TestHost::new(plugin.clone()),
    };
    let mut host = host.map_err(|e| format!("starting the test host: {e:#}"))?;
    let options = runner::Options {
        wait: Duration::ZERO,
    };
    runner::run(&script, &mut host, &options)
        .map_err(|failure| format!("{}: {failure}", path.display()))
}

/// Runs each script over the network against `server`, which must accept any password.
pub fn run_scripts_on_server(
    server: SocketAddr,
    muc_domain: &str,
    wait: Duration,
    scripts: &[PathBuf],
) -> Vec<ScriptResult> {
    scripts
        .iter()
        .map(|path| {
            let outcome = script::load(path)
                .map_err(|e| format!("{}: {e:#}", path.display()))
                .and_then(|script| {
                    let mut harness = NetworkHarness::new(server, muc_domain);
                    runner::run(&script, &mut harness, &runner::Options { wait })
                        .map_err(|failure| format!("{}: {failure}", path.display()))
                });
            ScriptResult {
                name: file_name(path),
                outcome,
            }
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    Pass,
    Diverges(String),
}

#[derive(Debug)]
pub struct Expectations(BTreeMap<String, Expectation>);

impl Expectations {
    pub fn load(path: &Path) -> Result<Expectations> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading expectations {}", path.display()))?;
        Expectations::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Expectations> {
        let mut expectations = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let Some((name, verdict)) = line.split_once(char::is_whitespace) else {
                bail!(
                    "line {}: expected 'NAME pass' or 'NAME diverges: REASON'",
                    number + 1
                );
            };
            let verdict = verdict.trim();
            let expectation = match verdict.strip_prefix("diverges:") {
                Some(reason) if !reason.trim().is_empty() => {
                    Expectation::Diverges(reason.trim().into())
                }
                _ if verdict == "pass" => Expectation::Pass,
                _ => bail!(
                    "line {}: '{verdict}' is neither 'pass' nor 'diverges: REASON'",
                    number + 1
                ),
            };
            expectations.insert(name.to_string(), expectation);
        }
        Ok(Expectations(expectations))
    }

    pub fn get(&self, name: &str) -> Option<&Expectation> {
        self.0.get(name)
    }
}

/// The report of a run: one block per script and a last line `N passed, N failed`. Without
/// expectations a failed script fails the run; with them, only a result that differs from its
/// expectation does (and then the last line counts expectations held and broken).
pub struct Report {
    pub text: String,
    pub ok: bool,
}

pub fn report(results: &[ScriptResult], expectations: Option<&Expectations>) -> Report {
    let mut text = String::new();
    let (mut held, mut broken) = (0, 0);
    for result in results {
        let passed = result.outcome.is_ok();
        let verdict = if passed { "pass" } else { "FAIL" };
        match expectations.map(|e| e.get(&result.name)) {
            None => {
                let _ = writeln!(text, "{verdict} {}", result.name);
                if passed {
                    held += 1
                } else {
                    broken += 1
                }
            }
            Some(None) => {
                let _ = writeln!(
                    text,
                    "{verdict} {} (no expectation recorded: a failure)",
                    result.name
                );
                broken += 1;
            }
            Some(Some(expected)) => {
                let as_expected = passed == (*expected == Expectation::Pass);
                let note = match (expected, as_expected) {
                    (Expectation::Pass, true) => String::new(),
                    (Expectation::Diverges(why), true) => format!(" (diverges as expected: {why})"),
                    (Expectation::Pass, false) => " (UNEXPECTED: expected to pass)".into(),
                    (Expectation::Diverges(_), false) => {
                        " (UNEXPECTED: now passes; record it as pass)".into()
                    }
                };
                let _ = writeln!(text, "{verdict} {}{note}", result.name);
                if as_expected {
                    held += 1
                } else {
                    broken += 1
                }
            }
        }
        if let Err(failure) = &result.outcome {
            let verbose = expectations.is_none()
                || expectations.and_then(|e| e.get(&result.name)) == Some(&Expectation::Pass);
            if verbose {
                for line in failure.lines() {
                    let _ = writeln!(text, "    {line}");
                }
            }
        }
    }
    let _ = writeln!(text, "{held} passed, {broken} failed");
    Report {
        text,
        ok: broken == 0,
    }
}
