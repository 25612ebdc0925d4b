//! A store the plugin wrote in storage layout 1 (no room list index) is upgraded when the plugin
//! of layout 2 takes it over: the host calls `upgrade` because the data's owner version differs,
//! and the service's room list then shows the public rooms stored before.

use std::sync::{Arc, Mutex};

use minidom::Element;
use muc_host::clock::SystemClock;
use muc_host::router::{QueueSink, Router};
use muc_host::runtime::{PluginRuntime, Settings};
use muc_host::service::Service;
use muc_host::storage::{Storage, Tier, Writes, DATA_OWNER_VERSION};
use muc_tests::compile;

fn room_record(jid: &str, public: bool) -> Option<Vec<u8>> {
    let record = format!(
        r#"{{"jid":"{jid}","locked":false,"subject":null,"config":{{"muc#roomconfig_persistentroom":true,"muc#roomconfig_publicroom":{public}}}}}"#
    );
    Some(record.into_bytes())
}

#[test]
fn a_layout_1_store_lists_its_public_rooms_once_upgraded() {
    let mut storage = Storage::in_memory();
    let mut writes = Writes::default();
    writes
        .durable
        .insert("meta/layout".into(), Some(b"1".to_vec()));
    for (room, public) in [("one", true), ("two", false), ("three", true)] {
        let jid = format!("{room}@conference.localhost");
        writes
            .durable
            .insert(format!("room/{jid}/config"), room_record(&jid, public));
        writes.durable.insert(
            format!("room/{jid}/affiliation/owner@localhost"),
            Some(br#"{"affiliation":"owner"}"#.to_vec()),
        );
    }
    storage.apply(writes).unwrap();
    storage.set_meta(DATA_OWNER_VERSION, "0.1.0").unwrap();
    let storage = Arc::new(Mutex::new(storage));

    let settings = Settings {
        service: "conference.localhost".into(),
        ..Settings::default()
    };
    let muc = PluginRuntime::start(
        compile("muc_plugin"),
        storage.clone(),
        settings,
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut service = Service::new(Router::new("localhost", "conference.localhost"), muc);
    let sink = QueueSink::default();
    service.connect("user@localhost/r".parse().unwrap(), Box::new(sink.clone()));
    let query: Element = "<iq xmlns='jabber:client' type='get' id='l' to='conference.localhost'>\
         <query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        .parse()
        .unwrap();
    service.from_client(&"user@localhost/r".parse().unwrap(), query);
    service.flush().unwrap();
    let answer: Vec<String> = std::iter::from_fn(|| sink.pop())
        .map(|stanza| String::from(&stanza))
        .collect();
    let list = answer
        .iter()
        .find(|s| s.contains("id='l'"))
        .expect("an answer");
    assert!(
        list.contains("jid='one@conference.localhost'")
            && list.contains("jid='three@conference.localhost'")
            && !list.contains("two@")
            && list.contains("<count>2</count>"),
        "{list}"
    );
    let mut storage = storage.lock().unwrap();
    assert_eq!(storage.get(Tier::Durable, "meta/layout"), Some(&b"2"[..]));
}
