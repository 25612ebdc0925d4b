//! A store the plugin wrote in storage layout 1 (no room list index, the join history under
//! `room/ROOM/history/`) is upgraded when the current plugin takes it over: the host calls
//! `upgrade` because the data's owner version differs; the service's room list then shows the
//! public rooms stored before, and the room's archive (MAM) holds its old history, in order,
//! the history keys gone.

use std::sync::Arc;

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
fn a_layout_1_store_lists_its_public_rooms_and_archives_its_history_once_upgraded() {
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
    let history = [
        (
            0,
            "<stanza-id xmlns='urn:xmpp:sid:0' id='old-1' by='one@conference.localhost'/>",
            "first",
        ),
        (1, "", "second"),
    ];
    for (seq, stanza_id, body) in history {
        let stanza = format!(
            "<message xmlns='jabber:client' type='groupchat' from='one@conference.localhost/Nick'>\
             <body>{body}</body>{stanza_id}</message>"
        );
        // The stanza holds neither `"` nor `\`: it goes into the JSON string as it is.
        let entry = format!(r#"{{"stanza":"{stanza}","at_ms":{}}}"#, 1_000 + seq);
        writes.durable.insert(
            format!("room/one@conference.localhost/history/{seq:020}"),
            Some(entry.into_bytes()),
        );
    }
    writes.durable.insert(
        "room/one@conference.localhost/history-range".into(),
        Some(br#"{"first":0,"next":2}"#.to_vec()),
    );
    storage.apply(writes).unwrap();
    storage.set_meta(DATA_OWNER_VERSION, "0.1.0").unwrap();

    let settings = Settings {
        service: "conference.localhost".into(),
        ..Settings::default()
    };
    let muc = PluginRuntime::start(
        compile("muc_plugin"),
        storage,
        None,
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

    let mam: Element = "<iq xmlns='jabber:client' type='set' id='m' to='one@conference.localhost'>\
         <query xmlns='urn:xmpp:mam:2' queryid='q'/></iq>"
        .parse()
        .unwrap();
    service.from_client(&"user@localhost/r".parse().unwrap(), mam);
    service.flush().unwrap();
    let answer: Vec<String> = std::iter::from_fn(|| sink.pop())
        .map(|stanza| String::from(&stanza))
        .collect();
    let results: Vec<&String> = answer
        .iter()
        .filter(|s| s.contains("urn:xmpp:mam:2"))
        .collect();
    assert_eq!(results.len(), 3, "two results and the fin: {answer:?}");
    assert!(
        results[0].contains("id='old-1'") && results[0].contains("<body>first</body>"),
        "{}",
        results[0]
    );
    assert!(
        results[1].contains("id='history-00000000000000000001'")
            && results[1].contains("<body>second</body>"),
        "{}",
        results[1]
    );
    assert!(results[2].contains("<count>2</count>"), "{}", results[2]);

    let storage = service.muc.storage_mut();
    assert_eq!(storage.get(Tier::Durable, "meta/layout"), Some(&b"3"[..]));
    for key in [
        "room/one@conference.localhost/history/00000000000000000000",
        "room/one@conference.localhost/history-range",
    ] {
        assert_eq!(storage.get(Tier::Durable, key), None, "{key} is gone");
    }
}
