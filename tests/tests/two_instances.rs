//! Two instances on one PostgreSQL store, without an XMPP server.
//!
//! Fencing: instance A serves a room, then stops running (as if paused, or cut off from the
//! database) while B takes the room over; when A runs again, its next commit for the room is
//! refused by PostgreSQL and nothing of it reaches anyone.
//!
//! Timers: both instances read every timer at start, but a timer fires only on the instance
//! holding its room, or on one that adopts the room of an instance that is gone.
//!
//! Service-wide state: an extension installed or removed through one instance reaches the other
//! without a restart; a room taken over has its extension records read again; a timer of an
//! instance that died for good is found and fired by a survivor; the public room count is right
//! when two instances make rooms in the same instant.
//!
//! A rolling upgrade: the first instance swapped to a newer plugin upgrades the data once; an
//! instance still on the older one commits nothing more and refuses stanzas until it is swapped
//! too, and then serves on without upgrading the data a second time, its rooms read again in the
//! new layout (its occupants, of the old one, rejoin).
//!
//! Runs when `MUC_TEST_POSTGRES` names a server (`.ci/run` starts one).

use std::sync::Arc;

use minidom::Element;
use muc_host::clock::{Clock, ManualClock, SystemClock};
use muc_host::extensions::{Change, ExtensionCompiler, ExtensionLimits, Extensions};
use muc_host::router::{QueueSink, Router};
use muc_host::runtime::{PluginRuntime, Settings};
use muc_host::service::Service;
use muc_host::storage::lease::Fenced;
use muc_host::storage::{Storage, StoreLocation};
use muc_tests::{compile, component};

const MUC: &str = "conference.localhost";
const ROOM: &str = "den@conference.localhost";

/// A fresh schema on the test server, as a store location; dropped with the guard.
struct Schema {
    server: postgres::Config,
    name: String,
}

impl Schema {
    fn new() -> Option<Schema> {
        let url = std::env::var("MUC_TEST_POSTGRES")
            .ok()
            .filter(|url| !url.is_empty());
        let Some(url) = url else {
            eprintln!("MUC_TEST_POSTGRES unset: the fencing test did not run");
            return None;
        };
        let server: postgres::Config = url.parse().unwrap();
        let name = format!("fencing_{}", uuid::Uuid::new_v4().simple());
        let mut admin = server.connect(postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        Some(Schema { server, name })
    }

    fn store(&self) -> StoreLocation {
        let mut config = self.server.clone();
        config.options(&format!("-c search_path={}", self.name));
        StoreLocation::Postgres(config)
    }

    fn sql(&self, sql: &str) -> Vec<postgres::Row> {
        let mut admin = self.server.connect(postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("SET search_path = {}", self.name))
            .unwrap();
        admin.query(sql, &[]).unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut admin) = self.server.connect(postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
        }
    }
}

/// An instance named `name` on the store, with `user@localhost/r` connected.
fn instance(schema: &Schema, name: &str, user: &str) -> (Service<PluginRuntime>, QueueSink) {
    instance_on_clock(schema, name, user, Arc::new(SystemClock))
}

fn instance_on_clock(
    schema: &Schema,
    name: &str,
    user: &str,
    clock: Arc<dyn Clock>,
) -> (Service<PluginRuntime>, QueueSink) {
    instance_of("muc_plugin", schema, name, user, clock)
}

/// An instance of the plugin component `plugin`.
fn instance_of(
    plugin: &str,
    schema: &Schema,
    name: &str,
    user: &str,
    clock: Arc<dyn Clock>,
) -> (Service<PluginRuntime>, QueueSink) {
    let mut storage = Storage::open(&schema.store()).unwrap();
    storage.enable_group_commit();
    storage.join_cluster(name).unwrap();
    let plugin = compile(plugin);
    let compiler = ExtensionCompiler::new(None, ExtensionLimits::default()).unwrap();
    let mut extensions = Extensions::new(compiler);
    extensions.load(&mut storage);
    let settings = Settings {
        service: MUC.into(),
        ..Settings::default()
    };
    let muc = PluginRuntime::start(plugin, storage, Some(extensions), settings, clock).unwrap();
    let mut service = Service::new(Router::new("localhost", MUC), muc);
    let sink = QueueSink::default();
    service.connect(
        format!("{user}@localhost/r").parse().unwrap(),
        Box::new(sink.clone()),
    );
    (service, sink)
}

fn send(service: &mut Service<PluginRuntime>, user: &str, xml: &str) {
    let stanza: Element = xml.parse().unwrap();
    service.from_client(&format!("{user}@localhost/r").parse().unwrap(), stanza);
}

fn received(sink: &QueueSink) -> Vec<String> {
    std::iter::from_fn(|| sink.pop())
        .map(|stanza| String::from(&stanza))
        .collect()
}

/// Alice creates and configures a persistent room on `a`.
fn persistent_room(a: &mut Service<PluginRuntime>, sink: &QueueSink) {
    create_persistent(a, "alice", ROOM, &[]);
    a.flush().unwrap();
    let answers = received(sink);
    assert!(
        answers
            .iter()
            .any(|answer| answer.contains("id='config'") && answer.contains("type='result'")),
        "the room is configured: {answers:?}"
    );
}

/// `user` joins `room`, making it, and submits its configuration: persistent (public by
/// default), with `fields` besides; not flushed.
fn create_persistent(
    service: &mut Service<PluginRuntime>,
    user: &str,
    room: &str,
    fields: &[(&str, &str)],
) {
    send(service, user, &format!("<presence xmlns='jabber:client' to='{room}/{user}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    let fields: String = fields
        .iter()
        .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
        .collect();
    send(service, user, &format!(
        "<iq xmlns='jabber:client' type='set' id='config' to='{room}'>\
           <query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'>\
               <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
               <field var='muc#roomconfig_persistentroom'><value>1</value></field>{fields}\
             </x></query></iq>"));
}

fn message(n: u32) -> String {
    format!("<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='m{n}'><body>message {n}</body></message>")
}

/// The bodies in the room's archive, oldest first.
fn archived(schema: &Schema) -> Vec<String> {
    schema
        .sql("SELECT stanza FROM archive ORDER BY seq")
        .iter()
        .map(|row| {
            let stanza: Element = row.get::<_, String>(0).parse().unwrap();
            let body = stanza.get_child("body", "jabber:client").unwrap();
            body.text()
        })
        .collect()
}

#[test]
fn a_stale_owner_commits_nothing_and_sends_nothing_once_another_instance_took_its_room() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let (mut a, alice) = instance(&schema, "a", "alice");
    persistent_room(&mut a, &alice);
    send(&mut a, "alice", &message(1));
    a.flush().unwrap();
    assert!(
        received(&alice)
            .iter()
            .any(|stanza| stanza.contains("message 1")),
        "a serves the room"
    );

    // A stops running (paused: its session and heartbeat live on); ejabberd routes the room to
    // B now, and B's first stanza for it takes it over.
    let (mut b, bob) = instance(&schema, "b", "bob");
    send(&mut b, "bob", &format!("<presence xmlns='jabber:client' to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    b.flush().unwrap();
    let joined = received(&bob);
    assert!(
        joined.iter().any(|stanza| stanza.contains("message 1")),
        "b serves the room with its history from the store: {joined:?}"
    );
    let owner =
        schema.sql("SELECT i.name, l.epoch FROM leases l JOIN instances i ON i.id = l.owner");
    assert_eq!(
        (owner[0].get::<_, String>(0), owner[0].get::<_, i64>(1)),
        ("b".to_string(), 2),
        "b holds the lease, one epoch later"
    );

    // A wakes up and handles what it had received: PostgreSQL refuses the commit.
    send(&mut a, "alice", &message(2));
    let refused = a.flush().unwrap_err();
    assert!(refused.is::<Fenced>(), "{refused:#}");
    assert!(
        received(&alice).is_empty(),
        "nothing of the refused batch left a"
    );
    assert!(received(&bob).is_empty());
    assert_eq!(
        archived(&schema),
        ["message 1"],
        "the stale message is in no archive"
    );
    assert_eq!(a.gauges().rooms, 0, "a forgot the room it lost");

    // B serves on undisturbed.
    send(&mut b, "bob", &message(3));
    b.flush().unwrap();
    assert!(received(&bob)
        .iter()
        .any(|stanza| stanza.contains("message 3")));
    assert_eq!(archived(&schema), ["message 1", "message 3"]);
}

#[test]
fn a_terminated_session_frees_the_rooms_and_the_old_owner_commits_nothing() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let (mut a, alice) = instance(&schema, "a", "alice");
    persistent_room(&mut a, &alice);

    // A's heartbeat session ends (cut off, or killed with the process): A is dead to the others.
    schema.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE pid <> pg_backend_pid() AND datname = current_database()
           AND pid IN (SELECT backend_pid FROM instances WHERE name = 'a')",
    );
    let (mut b, bob) = instance(&schema, "b", "bob");
    send(&mut b, "bob", &format!("<presence xmlns='jabber:client' to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    b.flush().unwrap();
    assert!(!received(&bob).is_empty());

    send(&mut a, "alice", &message(1));
    let refused = a.flush().unwrap_err();
    assert!(refused.is::<Fenced>(), "{refused:#}");
    assert!(received(&alice).is_empty());
    assert!(archived(&schema).is_empty());
}

/// The plugin's lock timeout (`plugin/src/features/lock.rs`).
const LOCK_TIMEOUT_MS: u64 = 30 * 60 * 1000;

#[test]
fn a_timer_fires_on_the_instance_holding_its_room_and_is_adopted_when_that_one_is_gone() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let clock = Arc::new(ManualClock::new());
    let (mut a, alice) = instance_on_clock(&schema, "a", "alice", clock.clone());
    // A new room, never configured: its lock timer is set, in the store, as the room's.
    send(&mut a, "alice", &format!("<presence xmlns='jabber:client' to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    a.flush().unwrap();
    assert!(!received(&alice).is_empty());
    let rooms: Vec<Option<String>> = schema
        .sql("SELECT room FROM timers")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rooms, [Some(ROOM.to_string())]);

    // B starts after it, so it read the timer too.
    let (mut b, bob) = instance_on_clock(&schema, "b", "bob", clock.clone());
    clock.advance_ms(LOCK_TIMEOUT_MS);
    b.run_due_timers();
    b.flush().unwrap();
    assert_eq!(
        b.next_timer(),
        None,
        "b left the timer to the room's holder"
    );
    assert!(received(&bob).is_empty());
    a.run_due_timers();
    a.flush().unwrap();
    let destroyed = received(&alice);
    assert!(
        destroyed.iter().any(|stanza| stanza.contains("<destroy")),
        "a, holding the room, fired its lock timer: {destroyed:?}"
    );
    assert!(schema.sql("SELECT 1 FROM timers").is_empty());

    // A room whose holder is gone: its timer is adopted by an instance that has it.
    send(&mut a, "alice", &format!("<presence xmlns='jabber:client' to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    a.flush().unwrap();
    drop(a);
    let (mut c, _carol) = instance_on_clock(&schema, "c", "carol", clock.clone());
    clock.advance_ms(LOCK_TIMEOUT_MS);
    c.run_due_timers();
    c.flush().unwrap();
    assert!(
        schema.sql("SELECT 1 FROM timers").is_empty(),
        "c fired the gone instance's timer"
    );
    let owner = schema.sql("SELECT i.name FROM leases l JOIN instances i ON i.id = l.owner");
    assert_eq!(
        owner[0].get::<_, String>(0),
        "c",
        "c took the room to fire it"
    );
}

#[test]
fn a_rolling_upgrade_upgrades_the_data_once_and_an_older_instance_waits_for_its_swap() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let old = "muc_plugin_0_2_0";
    let (mut a, alice) = instance_of(old, &schema, "a", "alice", Arc::new(SystemClock));
    persistent_room(&mut a, &alice);
    let (mut b, bob) = instance_of(old, &schema, "b", "bob", Arc::new(SystemClock));
    let other_room = "hall@conference.localhost";
    let join_hall = format!("<presence xmlns='jabber:client' to='{other_room}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    send(&mut b, "bob", &join_hall);
    // A room b holds in memory only, which nothing touches until b is swapped.
    let lounge = "lounge@conference.localhost";
    send(&mut b, "bob", &format!("<presence xmlns='jabber:client' to='{lounge}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    b.flush().unwrap();
    assert!(!received(&bob).is_empty());

    // A is swapped first: it upgrades the data.
    let prepared = a.muc.preparer().prepare(compile("muc_plugin")).unwrap();
    let report = a.swap(prepared).unwrap();
    assert!(report.upgraded);
    a.flush().unwrap();
    let owner = schema.sql("SELECT value FROM host_meta WHERE key = 'data-owner-version'");
    assert_eq!(owner[0].get::<_, String>(0), "0.3.0");

    // B, still on 0.2.0, may not write data in 0.3.0's layout: its commit is refused, and its
    // next stanzas are answered "wait" without reaching its plugin.
    let say = |n: u32| {
        format!("<message xmlns='jabber:client' type='groupchat' to='{other_room}' id='h{n}'><body>hall {n}</body></message>")
    };
    send(&mut b, "bob", &say(1));
    let refused = b.flush().unwrap_err();
    let fenced = refused.downcast_ref::<Fenced>().expect("a fenced batch");
    assert_eq!(fenced.upgraded_to.as_deref(), Some("0.3.0"));
    assert!(received(&bob).is_empty());
    send(&mut b, "bob", &say(2));
    b.flush().unwrap();
    let answer = received(&bob);
    assert!(
        answer.len() == 1
            && answer[0].contains("type='error'")
            && answer[0].contains("service-unavailable"),
        "{answer:?}"
    );

    // B swapped to 0.3.0 takes the data as it is (no second upgrade) and serves on. What it
    // held in memory was of 0.2.0's layout: it is gone (the lounge, a temporary room, with it,
    // as after a restart), and bob joins again.
    let prepared = b.muc.preparer().prepare(compile("muc_plugin")).unwrap();
    let report = b.swap(prepared).unwrap();
    assert!(!report.upgraded, "the data was upgraded once, by a");
    b.flush().unwrap();
    send(&mut b, "bob", &format!("<message xmlns='jabber:client' type='groupchat' to='{lounge}' id='l1'><body>lounge</body></message>"));
    b.flush().unwrap();
    let answer = received(&bob);
    assert!(
        answer.len() == 1 && answer[0].contains("item-not-found"),
        "the lounge of b's memory, in the old layout, is gone: {answer:?}"
    );
    send(&mut b, "bob", &join_hall);
    send(&mut b, "bob", &say(4));
    b.flush().unwrap();
    assert!(received(&bob)
        .iter()
        .any(|stanza| stanza.contains("hall 4")));
}

/// Flushes `service` until `done` holds, for at most a few heartbeats (an instance learns of
/// another's catalog change from its heartbeat, every second).
fn flush_until(
    service: &mut Service<PluginRuntime>,
    done: impl Fn(&Service<PluginRuntime>) -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        service.flush().unwrap();
        if done(service) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

fn lists_extension(service: &Service<PluginRuntime>, name: &str) -> bool {
    service
        .extension_list()
        .iter()
        .any(|(entry, broken)| entry.name == name && broken.is_none())
}

fn groupchat(room: &str, id: &str, body: &str) -> String {
    format!("<message xmlns='jabber:client' type='groupchat' to='{room}' id='{id}'><body>{body}</body></message>")
}

#[test]
fn an_extension_installed_through_one_instance_serves_on_the_other_and_a_room_taken_over_keeps_its_choices(
) {
    let Some(schema) = Schema::new() else {
        return;
    };
    let (mut a, alice) = instance(&schema, "a", "alice");
    let (mut b, bob) = instance(&schema, "b", "bob");
    let dice = std::fs::read(component("ext_dice")).unwrap();
    let compiler = ExtensionCompiler::new(None, Default::default()).unwrap();
    a.change_extensions(Change::Install {
        compiled: Box::new(compiler.compile(&dice).unwrap()),
        rooms: None,
    })
    .unwrap();
    a.flush().unwrap();
    assert!(
        flush_until(&mut b, |b| lists_extension(b, "dice")),
        "b loaded the extension a installed, without a restart"
    );

    // On b, an owner switches it on in a room of b's, and it answers there.
    let hall = "hall@conference.localhost";
    create_persistent(&mut b, "bob", hall, &[("extension#dice", "1")]);
    send(&mut b, "bob", &groupchat(hall, "r1", "!roll"));
    b.flush().unwrap();
    let rolled = received(&bob);
    assert!(
        rolled
            .iter()
            .any(|stanza| stanza.contains(&format!("from='{hall}/dice'"))),
        "dice answers on b: {rolled:?}"
    );

    // ejabberd routes the room to a now: a takes it over, reads its extension records as b left
    // them (a read the extension tier at start, before the room had any), and dice answers.
    send(&mut a, "alice", &format!("<presence xmlns='jabber:client' to='{hall}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    send(&mut a, "alice", &groupchat(hall, "r2", "!roll"));
    a.flush().unwrap();
    let rolled = received(&alice);
    assert!(
        rolled
            .iter()
            .any(|stanza| stanza.contains(&format!("from='{hall}/dice'"))
                && !stanza.contains("urn:xmpp:delay")),
        "dice is still on in the room, on a (an answer, not the history): {rolled:?}"
    );

    // Removed through a: b unloads it.
    a.change_extensions(Change::Remove("dice".into())).unwrap();
    a.flush().unwrap();
    assert!(
        flush_until(&mut b, |b| b.extension_list().is_empty()),
        "b unloaded the extension a removed"
    );
}

#[test]
fn a_timer_of_an_instance_gone_for_good_is_found_and_fired_by_a_survivor() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let clock = Arc::new(ManualClock::new());
    let (mut b, _bob) = instance_on_clock(&schema, "b", "bob", clock.clone());
    // A starts after b and makes a room, never configured: its lock timer is a's, in the store
    // only (b read the timers before it was set).
    let (mut a, alice) = instance_on_clock(&schema, "a", "alice", clock.clone());
    send(&mut a, "alice", &format!("<presence xmlns='jabber:client' to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    a.flush().unwrap();
    assert!(!received(&alice).is_empty());
    assert_eq!(b.next_timer(), None, "b does not have the timer");

    // A is gone for good, and nothing is routed to its room any more.
    schema.sql("DELETE FROM instances WHERE name = 'a'");
    clock.advance_ms(LOCK_TIMEOUT_MS);
    b.run_due_timers();
    b.flush().unwrap();
    assert!(
        schema.sql("SELECT 1 FROM timers").is_empty(),
        "b found the gone instance's due timer and fired it"
    );
    let owner = schema.sql("SELECT i.name FROM leases l JOIN instances i ON i.id = l.owner");
    assert_eq!(
        owner[0].get::<_, String>(0),
        "b",
        "b took the room to fire it"
    );
}

#[test]
fn two_public_rooms_made_on_two_instances_in_the_same_instant_are_both_counted() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let (mut a, alice) = instance(&schema, "a", "alice");
    let (mut b, bob) = instance(&schema, "b", "bob");
    // Both batches read the count before either commits.
    create_persistent(&mut a, "alice", ROOM, &[]);
    create_persistent(&mut b, "bob", "hall@conference.localhost", &[]);
    a.flush().unwrap();
    b.flush().unwrap();
    for answers in [received(&alice), received(&bob)] {
        assert!(
            answers
                .iter()
                .any(|answer| answer.contains("id='config'") && answer.contains("type='result'")),
            "{answers:?}"
        );
    }
    let count = schema.sql(
        "SELECT convert_from(value, 'UTF8') FROM durable WHERE key = 'meta/public-room-count'::bytea",
    );
    assert_eq!(count[0].get::<_, String>(0), "2");

    // The room list, asked of either, counts both.
    send(&mut a, "alice", "<iq xmlns='jabber:client' type='get' id='items' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set></query></iq>");
    a.flush().unwrap();
    let items = received(&alice);
    assert!(
        items
            .iter()
            .any(|answer| answer.contains("<count>2</count>")),
        "{items:?}"
    );
}

#[test]
fn temporary_rooms_are_listed_by_every_instance_while_their_own_lives() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let (mut a, alice) = instance(&schema, "a", "alice");
    let (mut b, bob) = instance(&schema, "b", "bob");
    create_persistent(
        &mut a,
        "alice",
        "tea@conference.localhost",
        &[("muc#roomconfig_persistentroom", "0")],
    );
    create_persistent(
        &mut b,
        "bob",
        "coffee@conference.localhost",
        &[("muc#roomconfig_persistentroom", "0")],
    );
    a.flush().unwrap();
    b.flush().unwrap();
    let items = "<iq xmlns='jabber:client' type='get' id='items' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>";
    let listed = |service: &mut Service<PluginRuntime>, user: &str, sink: &QueueSink| {
        received(sink);
        send(service, user, items);
        service.flush().unwrap();
        let answer = received(sink).join("");
        ["tea", "coffee"]
            .into_iter()
            .filter(|room| answer.contains(&format!("jid='{room}@conference.localhost'")))
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(&mut a, "alice", &alice), ["tea", "coffee"]);
    assert_eq!(listed(&mut b, "bob", &bob), ["tea", "coffee"]);
    // A is gone, and its temporary room with it.
    schema.sql("DELETE FROM instances WHERE name = 'a'");
    assert_eq!(listed(&mut b, "bob", &bob), ["coffee"]);
}
