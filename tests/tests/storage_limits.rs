//! Every valid input fits the storage layout, and a limit of the store that a user's input can
//! reach is answered as the request's fault, never as `internal-server-error`.

use std::time::Duration;

use minidom::Element;
use muc_host::scansion::Harness;
use muc_host::testhost::TestHost;
use muc_tests::compile;

/// The longest part of a JID that RFC 7622 allows.
const LONGEST_PART: usize = 1023;

fn stanza(xml: &str) -> Element {
    xml.parse().unwrap()
}

fn received(host: &mut TestHost, client: &str) -> Vec<String> {
    std::iter::from_fn(|| host.next_stanza(client, Duration::ZERO))
        .map(|stanza| String::from(&stanza))
        .collect()
}

fn join(room: &str, nick: &str, payload: &str) -> Element {
    stanza(&format!(
        "<presence xmlns='jabber:client' to='{room}/{nick}'>\
         <x xmlns='http://jabber.org/protocol/muc'/>{payload}</presence>"
    ))
}

#[test]
fn the_longest_room_nick_and_jids_are_served_like_any_other() {
    let mut host = TestHost::new(compile("muc_plugin")).unwrap();
    let room = format!("{}@conference.localhost", "r".repeat(LONGEST_PART));
    let user = format!(
        "{}@localhost/{}",
        "u".repeat(LONGEST_PART),
        "s".repeat(LONGEST_PART)
    );
    let nick = "n".repeat(LONGEST_PART);
    host.connect("long", &user, "").unwrap();
    host.connect("other", "other@localhost/r", "").unwrap();

    host.send("long", join(&room, &nick, "")).unwrap();
    let created = received(&mut host, "long");
    assert!(
        created.iter().any(|s| s.contains("code='201'")),
        "{created:?}"
    );
    // An instant room, then persistent: the room's record moves to the durable tier.
    host.send(
        "long",
        stanza(&format!(
            "<iq xmlns='jabber:client' type='set' id='c' to='{room}'>\
             <query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
             </x></query></iq>"
        )),
    )
    .unwrap();
    let configured = received(&mut host, "long");
    assert!(
        configured.iter().any(|s| s.contains("type='result'")),
        "{configured:?}"
    );

    host.send("other", join(&room, &"o".repeat(LONGEST_PART), ""))
        .unwrap();
    let joined = received(&mut host, "other");
    assert!(
        joined.iter().any(|s| s.contains("code='110'")),
        "{joined:?}"
    );
    received(&mut host, "long");

    host.send(
        "long",
        stanza(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}' id='m'><body>hi</body></message>"
        )),
    )
    .unwrap();
    let message = received(&mut host, "other");
    assert!(
        message.iter().any(|s| s.contains("<body>hi</body>")),
        "{message:?}"
    );
    for stanza in received(&mut host, "long") {
        assert!(!stanza.contains("type='error'"), "{stanza}");
    }
}

#[test]
fn a_value_too_large_to_store_is_not_acceptable_with_a_reason() {
    let mut host = TestHost::new(compile("muc_plugin")).unwrap();
    let room = "big@conference.localhost";
    // Each client of one user keeps its presence in the occupant's one record: five clients
    // with a presence of 230 KB each make a record over the store's 1 MiB value cap.
    let status = format!("<status>{}</status>", "x".repeat(230 * 1024));
    let mut answers = Vec::new();
    for client in 0..5 {
        let name = format!("c{client}");
        host.connect(&name, &format!("user@localhost/{name}"), "")
            .unwrap();
        host.send(&name, join(room, "user", &status)).unwrap();
        answers = received(&mut host, &name);
    }
    let refusal = answers
        .iter()
        .find(|s| s.contains("type='error'"))
        .unwrap_or_else(|| panic!("the fifth client's join is refused: {answers:?}"));
    assert!(refusal.contains("<not-acceptable"), "{refusal}");
    assert!(refusal.contains("cannot store"), "{refusal}");
    assert!(!refusal.contains("internal-server-error"), "{refusal}");
}
