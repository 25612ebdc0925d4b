//! Plugin timers: due on the host's clock, fired once, kept with the durable state.

use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use muc_host::clock::ManualClock;
use muc_host::runtime::{PluginRuntime, Settings};
use muc_host::scansion::Harness;
use muc_host::storage::{Storage, StoreLocation};
use muc_host::testhost::TestHost;
use muc_tests::compile;

fn fired(host: &mut TestHost, after_ms: u64) -> Vec<Element> {
    host.clock().advance_ms(after_ms);
    host.run_due_timers().unwrap();
    std::iter::from_fn(|| host.next_stanza("user", Duration::ZERO)).collect()
}

#[test]
fn a_timer_fires_once_when_due() {
    let mut host = TestHost::new(compile("misbehaving_plugin")).unwrap();
    host.connect("user", "user@localhost/r", "").unwrap();
    let stanza: Element =
        "<message xmlns='jabber:client' to='room@conference.localhost' id='timer-1'/>"
            .parse()
            .unwrap();
    host.send("user", stanza).unwrap();
    assert!(
        host.next_stanza("user", Duration::ZERO).is_some(),
        "the stanza's own answer"
    );

    assert!(fired(&mut host, 900).is_empty(), "not yet due");
    let due = fired(&mut host, 100);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attr("id"), Some("timer-1"));
    assert!(fired(&mut host, 10_000).is_empty(), "fired once");
}

#[test]
fn timers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: &std::path::Path| {
        let storage = Storage::open(&StoreLocation::Sqlite(dir.into())).unwrap();
        let settings = Settings {
            service: "conference.localhost".into(),
            ..Settings::default()
        };
        PluginRuntime::start(
            compile("misbehaving_plugin"),
            storage,
            None,
            settings,
            Arc::new(ManualClock::new()),
        )
        .unwrap()
    };
    {
        let mut runtime = start(dir.path());
        let stanza: Element = "<message xmlns='jabber:client' from='user@localhost/r' to='room@conference.localhost' id='timer-2'/>"
            .parse()
            .unwrap();
        runtime
            .handle_stanza(muc_host::runtime::Inbound {
                stanza: &stanza,
                from: "user@localhost/r",
                to: "room@conference.localhost",
            })
            .unwrap();
    }
    let runtime = start(dir.path());
    let due = runtime.storage().next_timer();
    assert_eq!(due, Some(ManualClock::START_MS + 1000));
}
