//! The extension catalog on a running `muc-host serve`: installed from `--extension-dir` at
//! start, replaced and removed with `muc-host ext` while rooms use it (through the control
//! socket, compiled off the core thread), with the room's owners told of the removal.

use std::process::Command;
use std::time::Duration;

use minidom::Element;
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_tests::{component, repo_root, Server};

fn send(harness: &mut NetworkHarness, client: &str, xml: &str) {
    harness
        .send(client, xml.parse::<Element>().unwrap())
        .unwrap();
}

/// Everything `client` receives until `wanted` turns up (or a few seconds pass).
fn until(harness: &mut NetworkHarness, client: &str, wanted: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(stanza) = harness.next_stanza(client, Duration::from_secs(5)) {
        seen.push(String::from(&stanza));
        if seen.last().unwrap().contains(wanted) {
            return seen;
        }
    }
    panic!("{client} never received {wanted}: {seen:#?}");
}

fn ext(server: &Server, args: &[&str]) -> (bool, String) {
    let output = Command::new(repo_root().join("target/release/muc-host"))
        .arg("--data")
        .arg(server.data.path())
        .arg("ext")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn operators_install_replace_and_remove_extensions_while_rooms_use_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(component("probe_extension"), dir.path().join("probe.wasm")).unwrap();
    let extension_dir = dir.path().display().to_string();
    let server = Server::start(&["--insecure-auth", "--extension-dir", &extension_dir]);
    let (ok, listed) = ext(&server, &["list"]);
    assert!(ok && listed.contains("probe 1.0.0"), "{listed}");

    let mut harness = NetworkHarness::new(server.c2s, "conference.localhost");
    harness.connect("owner", "owner@localhost/a", "pw").unwrap();
    harness.connect("guest", "guest@localhost/b", "pw").unwrap();
    send(&mut harness, "owner", "<presence xmlns='jabber:client' to='lab@conference.localhost/boss'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    until(&mut harness, "owner", "code='110'");
    send(&mut harness, "owner", "<iq xmlns='jabber:client' type='set' id='c' to='lab@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='extension#probe'><value>1</value></field></x></query></iq>");
    until(&mut harness, "owner", "code='104'");
    send(&mut harness, "guest", "<presence xmlns='jabber:client' to='lab@conference.localhost/guest'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    until(&mut harness, "guest", "hello guest (participant)");

    let v2 = component("probe_extension_v2").display().to_string();
    let (ok, refused) = ext(&server, &["add", &v2, "--memory-mib", "65"]);
    assert!(
        !ok && refused.contains("ceiling of 64 MiB (--extension-max-memory-mib)"),
        "{refused}"
    );
    let (ok, replaced) = ext(
        &server,
        &["add", &v2, "--memory-mib", "24", "--instances", "8"],
    );
    assert!(
        ok && replaced.contains("replaced probe 1.0.0 by 2.0.0"),
        "{replaced}"
    );
    let (_, listed) = ext(&server, &["list"]);
    assert!(
        listed.contains("probe 2.0.0")
            && listed.contains("[memory 24 MiB, call time default, 8 instances]"),
        "{listed}"
    );
    send(&mut harness, "guest", "<message xmlns='jabber:client' type='groupchat' to='lab@conference.localhost'><body>!probe count</body></message>");
    until(&mut harness, "guest", "count 1");

    let (ok, refused) = ext(
        &server,
        &["add", &component("muc_plugin").display().to_string()],
    );
    assert!(!ok && refused.contains("not installed"), "{refused}");

    let (ok, removed) = ext(&server, &["remove", "probe"]);
    assert!(
        ok && removed.contains("switched off in 1 room"),
        "{removed}"
    );
    until(&mut harness, "owner", "uninstalled");
    let (_, listed) = ext(&server, &["list"]);
    assert!(listed.contains("no room extensions"), "{listed}");
}

/// With no service running, `ext add` changes the store directly, with the same limits and the
/// default ceilings; the catalog keeps the limits for the next start.
#[test]
fn limits_asked_at_install_are_kept_in_the_catalog_offline() {
    let data = tempfile::tempdir().unwrap();
    let ext = |args: &[&str]| {
        let output = Command::new(repo_root().join("target/release/muc-host"))
            .arg("--data")
            .arg(data.path())
            .arg("ext")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let probe = component("probe_extension").display().to_string();
    let (ok, refused) = ext(&["add", &probe, "--call-ms", "101"]);
    assert!(
        !ok && refused.contains("ceiling of 100 ms (--extension-max-call-ms)"),
        "{refused}"
    );
    let (ok, added) = ext(&["add", &probe, "--call-ms", "80", "--memory-mib", "20"]);
    assert!(ok, "{added}");
    let (_, listed) = ext(&["list"]);
    assert!(
        listed.contains("[memory 20 MiB, 80 ms per call, instances default]"),
        "{listed}"
    );
}
