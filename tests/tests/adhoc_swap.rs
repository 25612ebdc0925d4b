//! The hot-swap ad-hoc command (XEP-0050) on a running `muc-host serve`: service administrators
//! get the form and swap or roll back; anyone else is refused; the plugin never sees it.

use std::time::Duration;

use minidom::Element;
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_tests::{component, Server};

/// Sends an iq and returns its answer (a swap compiles the component first: seconds).
fn ask(harness: &mut NetworkHarness, client: &str, xml: &str) -> String {
    let stanza: Element = xml.parse().unwrap();
    let id = stanza.attr("id").unwrap().to_string();
    harness.send(client, stanza).unwrap();
    while let Some(answer) = harness.next_stanza(client, Duration::from_secs(60)) {
        if answer.name() == "iq" && answer.attr("id") == Some(id.as_str()) {
            return String::from(&answer);
        }
    }
    panic!("no answer to {xml}");
}

fn version(harness: &mut NetworkHarness, client: &str) -> String {
    let answer = ask(harness, client, "<iq xmlns='jabber:client' type='get' id='v' to='conference.localhost'><query xmlns='jabber:iq:version'/></iq>");
    let start = answer.find("<version>").expect(&answer) + "<version>".len();
    answer[start..start + answer[start..].find('<').unwrap()].to_string()
}

fn submit(action: &str, plugin: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='s' to='conference.localhost'>\
         <command xmlns='http://jabber.org/protocol/commands' node='urn:muc-host:swap' sessionid='x'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='action'><value>{action}</value></field>\
         <field var='plugin'><value>{plugin}</value></field></x></command></iq>"
    )
}

#[test]
fn administrators_swap_and_roll_back_from_a_client_and_others_are_refused() {
    let server = Server::start(&["--insecure-auth", "--admin", "admin@localhost"]);
    let mut harness = NetworkHarness::new(server.c2s, "conference.localhost");
    harness
        .connect("admin", "admin@localhost/ops", "pw")
        .unwrap();
    harness.connect("user", "user@localhost/x", "pw").unwrap();
    assert_eq!(version(&mut harness, "admin"), "0.3.0");

    let form = ask(&mut harness, "admin", "<iq xmlns='jabber:client' type='set' id='e' to='conference.localhost'><command xmlns='http://jabber.org/protocol/commands' node='urn:muc-host:swap' action='execute'/></iq>");
    assert!(
        form.contains("status='executing'") && form.contains("var='plugin'"),
        "{form}"
    );

    let variant = component("muc_plugin_swap_test");
    let done = ask(
        &mut harness,
        "admin",
        &submit("swap", &variant.display().to_string()),
    );
    assert!(
        done.contains("status='completed'") && done.contains("type='info'"),
        "{done}"
    );
    assert_eq!(version(&mut harness, "user"), "0.3.0+swap-test");

    let refused = ask(&mut harness, "user", &submit("rollback", ""));
    assert!(refused.contains("<forbidden"), "{refused}");
    assert_eq!(version(&mut harness, "user"), "0.3.0+swap-test");

    let bad = ask(&mut harness, "admin", &submit("swap", "/nonexistent.wasm"));
    assert!(
        bad.contains("type='error'") && bad.contains("nonexistent"),
        "{bad}"
    );

    let back = ask(&mut harness, "admin", &submit("rollback", ""));
    assert!(back.contains("type='info'"), "{back}");
    assert_eq!(version(&mut harness, "admin"), "0.3.0");
}

#[test]
fn with_watch_plugin_a_changed_file_is_swapped_in() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("muc.wasm");
    std::fs::copy(component("muc_plugin"), &plugin).unwrap();
    let server = Server::start(&[
        "--insecure-auth",
        "--watch-plugin",
        "--plugin",
        plugin.to_str().unwrap(),
    ]);
    let mut harness = NetworkHarness::new(server.c2s, "conference.localhost");
    harness.connect("user", "user@localhost/x", "pw").unwrap();
    assert_eq!(version(&mut harness, "user"), "0.3.0");
    // Written elsewhere and renamed into place, as a deployment would.
    let next = dir.path().join("muc.wasm.new");
    std::fs::copy(component("muc_plugin_swap_test"), &next).unwrap();
    std::fs::rename(&next, &plugin).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while version(&mut harness, "user") != "0.3.0+swap-test" {
        assert!(
            std::time::Instant::now() < deadline,
            "the new file was not swapped in"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
