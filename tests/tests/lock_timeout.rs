//! A new room its owner never configures is destroyed when its lock timer fires (XEP-0045
//! §10.1.1), on the host's clock: the test host's virtual one here.

use std::time::Duration;

use minidom::Element;
use muc_host::scansion::Harness;
use muc_host::testhost::TestHost;
use muc_tests::compile;

const LOCK_TIMEOUT_MS: u64 = 30 * 60 * 1000;

fn join(host: &mut TestHost, client: &str, room: &str) -> Vec<Element> {
    let presence: Element = format!(
        "<presence xmlns='jabber:client' to='{room}@conference.localhost/{client}'>\
         <x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    .parse()
    .unwrap();
    host.send(client, presence).unwrap();
    drain(host, client)
}

fn drain(host: &mut TestHost, client: &str) -> Vec<Element> {
    std::iter::from_fn(|| host.next_stanza(client, Duration::ZERO)).collect()
}

#[test]
fn an_unconfigured_room_is_destroyed_when_its_lock_expires() {
    let mut host = TestHost::new(compile("muc_plugin")).unwrap();
    host.connect("owner", "owner@localhost/a", "").unwrap();
    host.connect("other", "other@localhost/b", "").unwrap();
    join(&mut host, "owner", "forgotten");

    host.clock().advance_ms(LOCK_TIMEOUT_MS - 60_000);
    host.run_due_timers().unwrap();
    assert!(drain(&mut host, "owner").is_empty(), "not yet");

    host.clock().advance_ms(60_000);
    host.run_due_timers().unwrap();
    let destroyed = drain(&mut host, "owner");
    assert_eq!(destroyed.len(), 1, "{destroyed:?}");
    let presence = String::from(&destroyed[0]);
    assert!(
        presence.contains("type='unavailable'") && presence.contains("<destroy"),
        "{presence}"
    );

    // Gone: the next joiner creates it anew, as its owner.
    let created = join(&mut host, "other", "forgotten");
    assert!(String::from(&created[0]).contains("code='201'"));
}

#[test]
fn a_configured_room_outlives_its_lock_timer() {
    let mut host = TestHost::new(compile("muc_plugin")).unwrap();
    host.connect("owner", "owner@localhost/a", "").unwrap();
    join(&mut host, "owner", "kept");
    let instant: Element = "<iq xmlns='jabber:client' type='set' id='c' to='kept@conference.localhost'>\
         <query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        .parse()
        .unwrap();
    host.send("owner", instant).unwrap();
    drain(&mut host, "owner");
    host.clock().advance_ms(2 * LOCK_TIMEOUT_MS);
    host.run_due_timers().unwrap();
    assert!(drain(&mut host, "owner").is_empty());
}
