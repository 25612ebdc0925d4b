//! A room with an extension in each language switched on, through `muc-host serve`: word-filter
//! (Rust) masks a word, link-guard (Python) refuses a newcomer's message full of links, poll
//! (JavaScript) runs a poll with its bot's lines, and ordinary messages reach everyone.

use std::path::Path;
use std::time::Duration;

use minidom::Element;
use muc_host::extensions::{ExtensionCompiler, ExtensionLimits};
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_tests::{component, repo_root, Server};

const ROOM: &str = "lab@conference.localhost";
const EXTENSIONS: [&str; 3] = ["ext_word_filter", "ext_link_guard", "ext_poll"];

fn send(harness: &mut NetworkHarness, client: &str, xml: &str) {
    harness
        .send(client, xml.parse::<Element>().unwrap())
        .unwrap();
}

fn say(harness: &mut NetworkHarness, client: &str, body: &str) {
    send(
        harness,
        client,
        &format!("<message xmlns='jabber:client' type='groupchat' to='{ROOM}'><body>{body}</body></message>"),
    );
}

/// Everything `client` receives until `wanted` turns up (or a few seconds pass), none of it an
/// owner's notice of an extension's fault.
fn until(harness: &mut NetworkHarness, client: &str, wanted: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(stanza) = harness.next_stanza(client, Duration::from_secs(10)) {
        seen.push(String::from(&stanza));
        assert!(
            !seen.last().unwrap().contains("The room extension '"),
            "{client}: {seen:#?}"
        );
        if seen.last().unwrap().contains(wanted) {
            return seen;
        }
    }
    panic!("{client} never received {wanted}: {seen:#?}");
}

/// The service compiles each component into its data directory's cache at start: a Python or
/// JavaScript one takes 10 s of CPU. The tests' cache already holds them (compiled here if not),
/// under the names the service looks for, so they are copied in.
fn seed_compile_cache(data: &Path, components: &[&Path]) {
    let test_cache = repo_root().join("target/test-cache");
    let compiler =
        ExtensionCompiler::new(Some(test_cache.clone()), ExtensionLimits::default()).unwrap();
    let cache = data.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    for path in components {
        let compiled = compiler.compile(&std::fs::read(path).unwrap()).unwrap();
        for file in std::fs::read_dir(&test_cache).unwrap() {
            let file = file.unwrap();
            if file
                .file_name()
                .to_string_lossy()
                .starts_with(&compiled.entry.hash)
            {
                std::fs::copy(file.path(), cache.join(file.file_name())).unwrap();
            }
        }
    }
}

#[test]
fn a_room_with_a_rust_a_python_and_a_javascript_extension_serves_its_occupants() {
    let dir = tempfile::tempdir().unwrap();
    let components: Vec<_> = EXTENSIONS.iter().map(|name| component(name)).collect();
    for path in &components {
        std::fs::copy(path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let paths: Vec<&Path> = components.iter().map(|path| path.as_path()).collect();
    seed_compile_cache(data.path(), &paths);
    let extension_dir = dir.path().display().to_string();
    let server = Server::start_in(
        data,
        &["--insecure-auth", "--extension-dir", &extension_dir],
    );

    let mut harness = NetworkHarness::new(server.c2s, "conference.localhost");
    harness.connect("owner", "owner@localhost/a", "pw").unwrap();
    harness.connect("guest", "guest@localhost/b", "pw").unwrap();
    send(&mut harness, "owner", &format!("<presence xmlns='jabber:client' to='{ROOM}/boss'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    until(&mut harness, "owner", "code='110'");
    let switched_on: String = ["word-filter", "link-guard", "poll"]
        .iter()
        .map(|name| format!("<field var='extension#{name}'><value>1</value></field>"))
        .collect();
    send(&mut harness, "owner", &format!("<iq xmlns='jabber:client' type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>{switched_on}</x></query></iq>"));
    until(&mut harness, "owner", "code='104'");
    // The guest joins after link-guard is on: a newcomer.
    send(&mut harness, "guest", &format!("<presence xmlns='jabber:client' to='{ROOM}/guest'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    until(&mut harness, "guest", "code='110'");

    say(&mut harness, "owner", "hello everyone");
    until(&mut harness, "guest", "hello everyone");
    until(&mut harness, "owner", "hello everyone");

    say(&mut harness, "guest", "what a badword");
    for client in ["owner", "guest"] {
        let seen = until(&mut harness, client, "what a *******");
        assert!(!seen.iter().any(|s| s.contains("badword")), "{seen:#?}");
    }

    say(
        &mut harness,
        "guest",
        "deals! https://a.example/x http://b.example www.c.example",
    );
    let refused = until(&mut harness, "guest", "policy-violation");
    assert!(
        refused.last().unwrap().contains("Too many links"),
        "{refused:#?}"
    );
    say(&mut harness, "guest", "sorry, no links");
    for client in ["owner", "guest"] {
        let seen = until(&mut harness, client, "sorry, no links");
        assert!(
            !seen.iter().any(|s| s.contains("deals!")),
            "{client}: {seen:#?}"
        );
    }

    say(&mut harness, "owner", "!poll open Lunch? | pizza | sushi");
    let opened = "boss opened a poll: Lunch? 1) pizza, 2) sushi. Vote with !poll vote N";
    until(&mut harness, "owner", opened);
    until(&mut harness, "guest", opened);
    say(&mut harness, "guest", "!poll vote 2");
    until(&mut harness, "owner", "!poll vote 2");
    say(&mut harness, "owner", "!poll close");
    let closed = "boss closed the poll: Lunch? 1) pizza: 0, 2) sushi: 1 (1 vote): sushi wins";
    for client in ["owner", "guest"] {
        let seen = until(&mut harness, client, closed);
        assert!(
            seen.last()
                .unwrap()
                .contains(&format!("from='{ROOM}/poll'")),
            "said by the poll bot: {seen:#?}"
        );
    }

    say(&mut harness, "guest", "bye now");
    until(&mut harness, "owner", "bye now");
    until(&mut harness, "guest", "bye now");
}
