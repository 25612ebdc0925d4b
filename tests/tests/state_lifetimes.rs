//! Volatile state survives replacing the plugin instance; durable state survives restarting the
//! host, and volatile state does not.

use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use muc_host::clock::SystemClock;
use muc_host::router::{QueueSink, Router};
use muc_host::runtime::{PluginRuntime, Settings};
use muc_host::scansion::Harness;
use muc_host::service::Service;
use muc_host::storage::{Storage, StoreLocation, Tier};
use muc_host::testhost::TestHost;
use muc_tests::compile;

fn join(host: &mut TestHost, client: &str, nick: &str) -> Vec<Element> {
    let presence: Element = format!(
        "<presence xmlns='jabber:client' to='room@conference.localhost/{nick}'>\
         <x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    .parse()
    .unwrap();
    host.send(client, presence).unwrap();
    std::iter::from_fn(|| host.next_stanza(client, Duration::ZERO)).collect()
}

#[test]
fn rooms_and_occupants_survive_a_fresh_instance() {
    let mut host = TestHost::new(compile("muc_plugin")).unwrap();
    host.connect("owner", "owner@localhost/a", "").unwrap();
    host.connect("other", "other@localhost/b", "").unwrap();
    let created = join(&mut host, "owner", "boss");
    assert!(String::from(&created[0]).contains("code='201'"));

    host.service().muc.replace_instance().unwrap();

    // The new instance knows the room is locked and who is in it.
    let refused = join(&mut host, "other", "guest");
    assert_eq!(refused.len(), 1);
    assert!(String::from(&refused[0]).contains("item-not-found"));
    // The owner is still an occupant: a repeated join is a resync (own presence without 201,
    // then the subject), not a second creation.
    let resync = join(&mut host, "owner", "boss");
    assert_eq!(resync.len(), 2, "{resync:?}");
    let own = String::from(&resync[0]);
    assert!(
        own.contains("code='110'") && !own.contains("code='201'"),
        "{own}"
    );
}

fn service_on(dir: &std::path::Path) -> (Service, QueueSink) {
    let storage = Storage::open(&StoreLocation::Sqlite(dir.into())).unwrap();
    let settings = Settings {
        service: "conference.localhost".into(),
        ..Settings::default()
    };
    let muc = PluginRuntime::start(
        compile("misbehaving_plugin"),
        storage,
        None,
        settings,
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut service = Service::new(Router::new("localhost", "conference.localhost"), muc);
    let sink = QueueSink::default();
    service.connect("user@localhost/r".parse().unwrap(), Box::new(sink.clone()));
    (service, sink)
}

#[test]
fn durable_state_survives_a_restart_and_volatile_state_does_not() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut service, sink) = service_on(dir.path());
        let message: Element =
            "<message xmlns='jabber:client' to='room@conference.localhost' id='kept'/>"
                .parse()
                .unwrap();
        service.from_client(&"user@localhost/r".parse().unwrap(), message);
        service.flush().unwrap();
        assert!(sink.pop().is_some(), "answered before the restart");
    }
    let (mut service, _) = service_on(dir.path());
    let storage = service.muc.storage_mut();
    assert_eq!(
        storage.get(Tier::Durable, "durable/kept"),
        Some(&b"kept"[..])
    );
    assert_eq!(storage.get(Tier::Volatile, "volatile/kept"), None);
}

#[test]
fn with_group_commit_nothing_leaves_before_its_writes_are_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = |key: &str| {
        Storage::open(&StoreLocation::Sqlite(dir.path().into()))
            .unwrap()
            .get(Tier::Durable, key)
            .map(<[u8]>::to_vec)
    };
    let (mut service, sink) = service_on(dir.path());
    service.muc.storage_mut().enable_group_commit();
    let message: Element =
        "<message xmlns='jabber:client' to='room@conference.localhost' id='batched'/>"
            .parse()
            .unwrap();
    service.from_client(&"user@localhost/r".parse().unwrap(), message);
    assert!(sink.pop().is_none(), "the answer waits for the sync");
    assert_eq!(on_disk("durable/batched"), None);
    assert_eq!(service.flush().unwrap(), 1, "one durable key synced");
    assert!(sink.pop().is_some(), "the answer leaves after the sync");
    assert_eq!(on_disk("durable/batched"), Some(b"batched".to_vec()));
}
