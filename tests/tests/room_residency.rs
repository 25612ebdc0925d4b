//! Persistent rooms leave memory when idle and come back whole: against a running
//! `muc-host serve` with a one-second idle time, a configured room with history is dropped from
//! memory (the `muc_rooms` gauge says so) and, on the next join, has its configuration and
//! history as before.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use minidom::Element;
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_tests::Server;

const ROOM: &str = "den@conference.localhost";

fn stanza(xml: &str) -> Element {
    xml.parse().unwrap()
}

/// Everything `client` receives until it has been quiet for a moment.
fn received(harness: &mut NetworkHarness, client: &str) -> Vec<String> {
    std::iter::from_fn(|| harness.next_stanza(client, Duration::from_millis(300)))
        .map(|stanza| String::from(&stanza))
        .collect()
}

/// The `muc_rooms` gauge: rooms in memory.
fn rooms_in_memory(metrics: SocketAddr) -> u64 {
    let mut socket = TcpStream::connect(metrics).unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    socket.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("muc_rooms "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no muc_rooms in {text}"))
}

#[test]
fn an_idle_persistent_room_leaves_memory_and_comes_back_with_its_config_and_history() {
    let metrics = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = Server::start(&[
        "--insecure-auth",
        "--room-idle-seconds",
        "1",
        "--metrics",
        &metrics.to_string(),
    ]);
    let mut harness = NetworkHarness::new(server.c2s, "conference.localhost");
    harness.connect("alice", "alice@localhost/a", "").unwrap();
    harness
        .send("alice", stanza(&format!("<presence xmlns='jabber:client' to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")))
        .unwrap();
    harness
        .send("alice", stanza(&format!("<iq xmlns='jabber:client' type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='muc#roomconfig_roomname'><value>The Den</value></field></x></query></iq>")))
        .unwrap();
    harness
        .send("alice", stanza(&format!("<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>kept across eviction</body></message>")))
        .unwrap();
    let seen = received(&mut harness, "alice");
    assert!(
        seen.iter()
            .any(|s| s.contains("id='cfg'") && s.contains("type='result'")),
        "configured: {seen:?}"
    );
    assert!(seen.iter().any(|s| s.contains("kept across eviction")));
    harness.disconnect("alice").unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    while rooms_in_memory(metrics) > 0 {
        assert!(Instant::now() < deadline, "the idle room stayed in memory");
        std::thread::sleep(Duration::from_millis(200));
    }

    harness.connect("bob", "bob@localhost/b", "").unwrap();
    harness
        .send("bob", stanza(&format!("<presence xmlns='jabber:client' to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")))
        .unwrap();
    let rejoined = received(&mut harness, "bob");
    assert!(
        rejoined.iter().any(|s| s.contains("kept across eviction")),
        "the history is back: {rejoined:?}"
    );
    assert!(
        !rejoined.iter().any(|s| s.contains("code='201'")),
        "the room was not made anew: {rejoined:?}"
    );
    assert_eq!(rooms_in_memory(metrics), 1);
    harness
        .send("bob", stanza(&format!("<iq xmlns='jabber:client' type='get' id='info' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")))
        .unwrap();
    let info = received(&mut harness, "bob").join("");
    assert!(
        info.contains("muc_persistent") && info.contains("The Den"),
        "its configuration is back: {info}"
    );
}
