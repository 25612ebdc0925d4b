//! The seed's first exchange, played by the test host against the freshly built plugin.

use muc_host::check;
use muc_tests::{compile, repo_root};

#[test]
fn the_seed_script_passes() {
    let plugin = compile("muc_plugin");
    let results = check::run_scripts(
        &plugin,
        None,
        &[repo_root().join("tests/scripts/seed-first-exchange.scs")],
    );
    let report = check::report(&results, None);
    assert!(report.ok, "{}", report.text);
    assert!(report.text.ends_with("1 passed, 0 failed\n"));
}

#[test]
fn a_script_that_expects_the_wrong_thing_fails_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("wrong.scs");
    std::fs::write(
        &script,
        "# Expects a member where the creator is owner\n\n[Client] A\n\tjid: a@localhost/r\n\tpassword: x\n\n-----\n\nA connects\n\nA sends:\n\t<presence to=\"r@conference.localhost/a\"><x xmlns=\"http://jabber.org/protocol/muc\"/></presence>\n\nA receives:\n\t<presence from=\"r@conference.localhost/a\"><x xmlns=\"http://jabber.org/protocol/muc#user\"><item affiliation=\"member\" role=\"participant\"/></x></presence>\n",
    )
    .unwrap();
    let results = check::run_scripts(&compile("muc_plugin"), None, &[script]);
    let report = check::report(&results, None);
    assert!(!report.ok);
    assert!(
        report.text.contains("wrong.scs: line 14"),
        "{}",
        report.text
    );
    assert!(
        report.text.contains("affiliation='owner'"),
        "shows what came: {}",
        report.text
    );
    assert!(report.text.ends_with("0 passed, 1 failed\n"));
}
