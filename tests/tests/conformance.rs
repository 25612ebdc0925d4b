//! Prosody's own MUC scripts, as a gated target: every script's result must match its line in
//! `tests/conformance/expectations.txt`, in both directions.

use muc_host::check::{self, Expectations};
use muc_tests::{compile, prosody_scripts_dir, repo_root};

#[test]
fn prosody_scripts_match_their_expectations() {
    let dir = prosody_scripts_dir();
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (shared/ must sit beside the repository)",
                dir.display()
            )
        })
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "scs"))
        .collect();
    scripts.sort();
    assert_eq!(scripts.len(), 18, "Prosody's corpus has 18 scripts");
    let expectations =
        Expectations::load(&repo_root().join("tests/conformance/expectations.txt")).unwrap();
    let results = check::run_scripts(&compile("muc_plugin"), None, &scripts);
    let report = check::report(&results, Some(&expectations));
    println!("{}", report.text);
    assert!(
        report.ok,
        "results differ from expectations:\n{}",
        report.text
    );
}
