//! Hot swap in the service core: a prepared plugin takes over between two stanzas with every
//! room and occupant intact and no presence sent; a plugin that cannot start is refused before
//! the switch, with the old one serving on.

use std::time::Duration;

use minidom::Element;
use muc_host::runtime::{Limits, Settings};
use muc_host::scansion::Harness;
use muc_host::testhost::TestHost;
use muc_tests::{compile, engine};

fn stanza(xml: &str) -> Element {
    xml.parse().unwrap()
}

fn drain(host: &mut TestHost, client: &str) -> Vec<String> {
    std::iter::from_fn(|| host.next_stanza(client, Duration::ZERO))
        .map(|stanza| String::from(&stanza))
        .collect()
}

fn software_version(host: &mut TestHost, client: &str) -> String {
    host.send(
        client,
        stanza("<iq xmlns='jabber:client' type='get' id='v' to='conference.localhost'><query xmlns='jabber:iq:version'/></iq>"),
    )
    .unwrap();
    let answer = drain(host, client).join("");
    let start = answer.find("<version>").expect("a version") + "<version>".len();
    answer[start..start + answer[start..].find('<').unwrap()].to_string()
}

/// A configured room with two occupants.
fn room_with_two(host: &mut TestHost) {
    for (client, jid) in [
        ("owner", "owner@localhost/a"),
        ("guest", "guest@localhost/b"),
    ] {
        host.connect(client, jid, "").unwrap();
    }
    host.send(
        "owner",
        stanza("<presence xmlns='jabber:client' to='room@conference.localhost/boss'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
    )
    .unwrap();
    host.send(
        "owner",
        stanza("<iq xmlns='jabber:client' type='set' id='c' to='room@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"),
    )
    .unwrap();
    host.send(
        "guest",
        stanza("<presence xmlns='jabber:client' to='room@conference.localhost/guest'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
    )
    .unwrap();
    drain(host, "owner");
    drain(host, "guest");
}

#[test]
fn the_new_plugin_serves_the_same_rooms_from_the_first_stanza_without_presence_churn() {
    let mut host = TestHost::new(compile("muc_plugin")).unwrap();
    room_with_two(&mut host);
    assert_eq!(software_version(&mut host, "owner"), "0.3.0");

    let prepared = host
        .service()
        .muc
        .preparer()
        .prepare(compile("muc_plugin_swap_test"))
        .unwrap();
    let report = host.service().swap(prepared).unwrap();
    assert!(report.upgraded, "another version: upgrade runs");
    host.service().flush().unwrap();
    assert!(
        drain(&mut host, "owner").is_empty() && drain(&mut host, "guest").is_empty(),
        "the swap itself sends nothing"
    );

    assert_eq!(software_version(&mut host, "owner"), "0.3.0+swap-test");
    host.send(
        "guest",
        stanza("<message xmlns='jabber:client' type='groupchat' to='room@conference.localhost' id='m'><body>after</body></message>"),
    )
    .unwrap();
    for client in ["owner", "guest"] {
        let got = drain(&mut host, client).join("");
        assert!(
            got.contains("from='room@conference.localhost/guest'")
                && got.contains("<body>after</body>"),
            "{client}: {got}"
        );
    }

    // Rollback: back to the first plugin, the room still there.
    let previous = host.service().muc.previous().expect("kept for rollback");
    let prepared = host.service().muc.preparer().prepare(previous).unwrap();
    host.service().swap(prepared).unwrap();
    assert_eq!(software_version(&mut host, "guest"), "0.3.0");
    assert_eq!(
        host.service().muc.status().previous.unwrap().version,
        "0.3.0+swap-test"
    );
}

#[test]
fn what_is_not_a_plugin_of_this_world_is_refused_at_compile_time() {
    let dir = tempfile::tempdir().unwrap();
    let core_module = dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let not_wasm = muc_tests::repo_root().join("README.md");
    let engine = engine();
    for (path, expected) in [
        (not_wasm, "magic header"),
        (core_module, "component"),
        (
            muc_tests::component("contract_v2_plugin"),
            "major versions differ",
        ),
    ] {
        let error = format!("{:#}", engine.compile(&path).err().expect("refused"));
        assert!(error.contains(expected), "{}: {error}", path.display());
    }
}

#[test]
fn a_plugin_that_cannot_start_is_refused_and_the_old_one_serves_on() {
    // Instantiated off the core thread, it starts (`init`, `describe`) where the store is, when
    // it takes over: the swap is refused there.
    for (mode, expected) in [
        ("trap", "init"),
        ("fail", "asked to fail"),
        ("loop", "time budget"),
        ("hoard", "init"),
    ] {
        let settings = Settings {
            service: "conference.localhost".into(),
            admins: vec![format!("init-{mode}@fixture.invalid")],
            limits: Limits {
                call_budget: Duration::from_millis(200),
                memory_bytes: 16 << 20,
                ..Limits::default()
            },
            ..Settings::default()
        };
        let mut host = TestHost::with_settings(compile("muc_plugin"), settings).unwrap();
        room_with_two(&mut host);
        let prepared = host
            .service()
            .muc
            .preparer()
            .prepare(compile("misbehaving_plugin"))
            .expect("instantiated");
        let error = host.service().swap(prepared).err().expect("refused");
        assert!(
            error.contains("failed to start") && error.contains(expected),
            "{mode}: {error}"
        );
        assert_eq!(host.service().muc.info().name, "muc", "{mode}");
        host.send(
            "guest",
            stanza("<message xmlns='jabber:client' type='groupchat' to='room@conference.localhost' id='m'><body>still</body></message>"),
        )
        .unwrap();
        assert!(
            drain(&mut host, "owner")
                .join("")
                .contains("<body>still</body>"),
            "{mode}"
        );
    }
}

#[test]
fn a_failed_migration_is_rolled_back_and_the_old_plugin_serves_on() {
    for mode in ["trap", "fail"] {
        let settings = Settings {
            service: "conference.localhost".into(),
            admins: vec![format!("upgrade-{mode}@fixture.invalid")],
            ..Settings::default()
        };
        let mut host = TestHost::with_settings(compile("muc_plugin"), settings).unwrap();
        room_with_two(&mut host);
        let prepared = host
            .service()
            .muc
            .preparer()
            .prepare(compile("misbehaving_plugin"))
            .unwrap();
        assert!(host.service().swap(prepared).is_err(), "{mode}");
        let storage = host.service().muc.storage_mut();
        assert_eq!(
            storage.get(muc_host::storage::Tier::Durable, "upgraded"),
            None,
            "{mode}: the migration's write is discarded"
        );
        assert_eq!(
            storage.meta(muc_host::storage::DATA_OWNER_VERSION),
            Some("0.3.0"),
            "{mode}: the data still belongs to the old plugin"
        );
        assert_eq!(host.service().muc.info().name, "muc");
        assert_eq!(software_version(&mut host, "owner"), "0.3.0");
    }
}
