//! The per-user cap on rooms created reaches the plugin from the host's settings: a user at the
//! cap is refused one more room with `not-allowed` and a text, an administrator is not, and a
//! room that goes frees its creator's slot.

use std::time::Duration;

use minidom::Element;
use muc_host::runtime::Settings;
use muc_host::scansion::Harness;
use muc_host::testhost::TestHost;
use muc_tests::compile;

/// Joins (creating it if need be) `room` as `client`; what came back.
fn enter(host: &mut TestHost, client: &str, room: &str) -> Vec<String> {
    send(
        host,
        client,
        &format!(
            "<presence xmlns='jabber:client' to='{room}@conference.localhost/{client}'>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ),
    )
}

fn send(host: &mut TestHost, client: &str, xml: &str) -> Vec<String> {
    let stanza: Element = xml.parse().unwrap();
    host.send(client, stanza).unwrap();
    std::iter::from_fn(|| host.next_stanza(client, Duration::ZERO))
        .map(|stanza| String::from(&stanza))
        .collect()
}

fn created(answer: &[String]) -> bool {
    answer.first().is_some_and(|own| own.contains("code='201'"))
}

#[test]
fn a_user_at_the_cap_is_refused_until_one_of_their_rooms_goes() {
    let settings = Settings {
        service: "conference.localhost".into(),
        admins: vec!["admin@localhost".into()],
        max_rooms_per_user: 2,
        ..Settings::default()
    };
    let mut host = TestHost::with_settings(compile("muc_plugin"), settings).unwrap();
    host.connect("user", "user@localhost/a", "").unwrap();
    host.connect("admin", "admin@localhost/b", "").unwrap();

    assert!(created(&enter(&mut host, "user", "one")));
    assert!(created(&enter(&mut host, "user", "two")));
    let refused = enter(&mut host, "user", "three");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("type='error'")
            && refused[0].contains("<not-allowed")
            && refused[0].contains("2 rooms"),
        "{}",
        refused[0]
    );

    for room in ["a1", "a2", "a3"] {
        assert!(
            created(&enter(&mut host, "admin", room)),
            "admins are exempt"
        );
    }

    // The owner destroys a room: the user may create one again.
    let destroyed = send(
        &mut host,
        "user",
        "<iq xmlns='jabber:client' type='set' id='d' to='one@conference.localhost'>\
         <query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>",
    );
    assert!(
        destroyed.iter().any(|s| s.contains("type='result'")),
        "{destroyed:?}"
    );
    assert!(created(&enter(&mut host, "user", "three")));
    assert!(!created(&enter(&mut host, "user", "four")));
}
