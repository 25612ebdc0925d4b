//! Room extensions in the service core: each hook's effect, the owner's switches, the catalog's
//! changes, and above all containment: every escape the hostile extension tries ends as a fault
//! in its own room, undone, reported to that room's owners, with the room (and every other room)
//! still answering.

use std::time::Duration;

use minidom::Element;
use muc_host::extensions::{
    AskedLimits, Call, Change, ExtensionCompiler, ExtensionLimits, Extensions,
};
use muc_host::lending::Place;
use muc_host::scansion::Harness;
use muc_host::storage::{Storage, Tier, Transaction};
use muc_host::testhost::TestHost;
use muc_host::wasm::plugin_world::muc::plugin::extensions::MessageHooksNeed;
use muc_tests::{compile, component, engine, repo_root};

const ROOM: &str = "lab@conference.localhost";
const CALM: &str = "calm@conference.localhost";

fn stanza(xml: &str) -> Element {
    xml.parse().unwrap()
}

fn drain(host: &mut TestHost, client: &str) -> Vec<String> {
    std::iter::from_fn(|| host.next_stanza(client, Duration::ZERO))
        .map(|stanza| String::from(&stanza))
        .collect()
}

/// No switching off, and time enough that only an endless loop runs out of it, however busy the
/// machine (a memory bomb must hit the memory cap, not the clock).
fn limits() -> ExtensionLimits {
    ExtensionLimits {
        faults_before_off: 100,
        call_budget: Duration::from_millis(500),
        ..ExtensionLimits::default()
    }
}

/// A test host with `extensions` installed (switched off until an owner switches them on).
fn host_with(extensions: &[&str], limits: ExtensionLimits) -> TestHost {
    let plugin = compile("muc_plugin");
    let compiler = ExtensionCompiler::new(Some(test_cache()), limits).unwrap();
    let mut host =
        TestHost::with_installed_extensions(plugin, Extensions::new(compiler.clone())).unwrap();
    for name in extensions {
        install(&mut host, &compiler, name);
    }
    host
}

fn install(host: &mut TestHost, compiler: &ExtensionCompiler, name: &str) -> String {
    install_asking(host, compiler, name, AskedLimits::default())
}

/// Installs `name` under the limits it asks for, as `ext add --memory-mib ...` does.
fn install_asking(
    host: &mut TestHost,
    compiler: &ExtensionCompiler,
    name: &str,
    asked: AskedLimits,
) -> String {
    let bytes = std::fs::read(component(name)).unwrap();
    let compiled = compiler.compile_asking(&bytes, asked).unwrap();
    let message = host
        .service()
        .change_extensions(Change::Install {
            compiled: Box::new(compiled),
            rooms: None,
        })
        .unwrap();
    host.service().flush().unwrap();
    message
}

fn submit(host: &mut TestHost, client: &str, room: &str, fields: &[(&str, &str)]) -> Vec<String> {
    let fields: String = fields
        .iter()
        .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
        .collect();
    host.send(
        client,
        stanza(&format!(
            "<iq xmlns='jabber:client' type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>"
        )),
    )
    .unwrap();
    drain(host, client)
}

fn join(host: &mut TestHost, client: &str, room: &str, nick: &str) -> Vec<String> {
    host.send(
        client,
        stanza(&format!(
            "<presence xmlns='jabber:client' to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )),
    )
    .unwrap();
    drain(host, client)
}

fn say(host: &mut TestHost, client: &str, room: &str, body: &str) {
    host.send(
        client,
        stanza(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}' id='m'><body>{body}</body></message>"
        )),
    )
    .unwrap();
}

/// `room` owned by "owner" (nick boss) with "guest" in it, configured with `fields`.
fn room(host: &mut TestHost, room: &str, fields: &[(&str, &str)]) {
    for (client, jid) in [
        ("owner", "owner@localhost/a"),
        ("guest", "guest@localhost/b"),
    ] {
        if host.connect(client, jid, "").is_err() {
            unreachable!()
        }
    }
    join(host, "owner", room, "boss");
    let answer = submit(host, "owner", room, fields);
    assert!(answer[0].contains("type='result'"), "{answer:?}");
    join(host, "guest", room, "guest");
    drain(host, "owner");
}

/// The compile cache the tests share: a Python or JavaScript component takes 10 s of CPU to
/// compile, then a moment to load.
fn test_cache() -> std::path::PathBuf {
    repo_root().join("target/test-cache")
}

/// Both rooms: `lab` with the hostile extension on, `calm` without it.
fn hostile_host(limits: ExtensionLimits) -> TestHost {
    hostile_host_asking(limits, AskedLimits::default())
}

/// As [`hostile_host`], the hostile extension installed asking for `asked`.
fn hostile_host_asking(limits: ExtensionLimits, asked: AskedLimits) -> TestHost {
    hostile_host_of("hostile_extension", "hostile", limits, asked)
}

/// Both rooms: `lab` with the extension `name` (built as `component`, installed asking for
/// `asked`) on, `calm` without it.
fn hostile_host_of(
    component: &str,
    name: &str,
    limits: ExtensionLimits,
    asked: AskedLimits,
) -> TestHost {
    let plugin = compile("muc_plugin");
    let compiler = ExtensionCompiler::new(Some(test_cache()), limits).unwrap();
    let mut host =
        TestHost::with_installed_extensions(plugin, Extensions::new(compiler.clone())).unwrap();
    install_asking(&mut host, &compiler, component, asked);
    room(&mut host, ROOM, &[(&format!("extension#{name}"), "1")]);
    host.connect("calm-owner", "calm@localhost/c", "").unwrap();
    join(&mut host, "calm-owner", CALM, "calm");
    submit(&mut host, "calm-owner", CALM, &[]);
    host
}

fn notices(received: &[String]) -> Vec<&String> {
    received
        .iter()
        .filter(|s| s.contains("type='normal'") && s.contains("room extension"))
        .collect()
}

#[test]
fn every_escape_of_the_hostile_extension_is_contained_in_its_room() {
    let mut host = hostile_host(limits());
    let escapes = [
        ("loop", "time budget of 500 ms"),
        ("memory", "memory cap of 16 MiB"),
        (
            "storage",
            // Its panic's message (the error), then the refusal it did not handle.
            "} (after a refusal: its storage quota of 262144 bytes is full)",
        ),
        (
            "occupants",
            "it called room.occupants without the read-occupants capability",
        ),
        // With what the guest printed on stderr last: Rust's panic message, a Python traceback.
        (
            "panic",
            "it crashed (wasm trap: wasm `unreachable` instruction executed): hostile panic",
        ),
        ("sleep", "may not wait"),
        ("log", ""),
    ];
    for (command, reason) in escapes {
        assert_contained(&mut host, "hostile", command, reason);
    }
    let stored = host
        .service()
        .muc
        .storage_mut()
        .range(Tier::Extensions, "store/hostile/", None)
        .count();
    assert_eq!(stored, 0, "the storage flood was undone with its fault");
}

/// The contract is semver: a component built against 0.1 is refused at install, and the reason
/// names both versions (linking alone would only say an interface is missing).
#[test]
fn an_extension_built_against_the_0_1_contract_is_refused_naming_both_versions() {
    let compiler = ExtensionCompiler::new(None, limits()).unwrap();
    let bytes = std::fs::read(component("contract_v0_1_extension")).unwrap();
    let Err(error) = compiler.compile(&bytes) else {
        panic!("a 0.1 component was accepted");
    };
    let why = format!("{error:#}");
    assert!(
        why.contains("built against muc:extension@0.1.0")
            && why.contains("this host speaks muc:extension@1.0.0"),
        "{why}"
    );
}

#[test]
fn a_refused_say_is_the_extension_s_to_handle_not_a_fault() {
    let mut host = hostile_host(limits());
    say(&mut host, "guest", ROOM, "!hostile flood");
    let guest = drain(&mut host, "guest");
    let said: Vec<&String> = guest.iter().filter(|s| s.contains("flood ")).collect();
    assert_eq!(
        said.len(),
        20,
        "its cap per minute, then refusals: {guest:?}"
    );
    assert!(said[19].contains("flood 19"), "in order: {}", said[19]);
    // Within the same minute: every say refused, still no fault.
    say(&mut host, "guest", ROOM, "!hostile flood");
    let guest = drain(&mut host, "guest");
    assert_eq!(guest.len(), 1, "only the command: {guest:?}");
    assert!(notices(&drain(&mut host, "owner")).is_empty());
}

/// The hostile extensions in Python and JavaScript (tests/fixtures/{python,js}/): a hook that
/// loops, one that hoards memory and one that raises are faults of their room like the Rust
/// one's, the fault quoting the exception. (A loop in a module's top level never reaches the
/// host: componentize-py and componentize-js run the top level at build time, under Wizer, and
/// the build hangs; the fixtures loop in their first call instead.)
#[test]
fn python_and_javascript_extensions_are_contained_like_rust_ones() {
    for (component, name, exception) in [
        (
            "ext_hostile_python",
            "hostile-python",
            "ValueError: hostile exception",
        ),
        // StarlingMonkey prints an Error's message alone, without its name.
        ("ext_hostile_js", "hostile-js", "hostile exception"),
    ] {
        let mut host = hostile_host_of(component, name, limits(), AskedLimits::default());
        let crashed =
            format!("it crashed (wasm trap: wasm `unreachable` instruction executed): {exception}");
        for (command, reason) in [
            ("loop", "time budget of 500 ms"),
            ("memory", "memory cap of 16 MiB"),
            ("raise", crashed.as_str()),
        ] {
            assert_contained(&mut host, name, command, reason);
        }
    }
}

/// What the host cannot run is refused before it is installed (`ext add` and `check --extension`
/// compile it so): a Python or JavaScript component built against the world plus an interface
/// of its own, naming that import; one whose module kept 32 MiB at its top level, which Wizer
/// baked into its initial memory, past the memory cap.
#[test]
fn python_and_javascript_components_the_host_cannot_run_are_refused_at_install() {
    let compiler = ExtensionCompiler::new(Some(test_cache()), ExtensionLimits::default()).unwrap();
    let imports = "it imports something a room extension is not given: component imports \
        instance `muc:evil/net`";
    let hoards = "it cannot be started under the host's limits: memory cap of 16777216 bytes \
        reached";
    for (component_name, refusal) in [
        ("ext_hostile_python_import", imports),
        ("ext_hostile_js_import", imports),
        ("ext_hostile_python_hoard", hoards),
        ("ext_hostile_js_hoard", hoards),
    ] {
        let bytes = std::fs::read(component(component_name)).unwrap();
        let error = match compiler.compile(&bytes) {
            Ok(compiled) => panic!("{component_name} installed as {}", compiled.entry.name),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(refusal), "{component_name}: {error}");
    }
}

/// `!hostile COMMAND` from the guest is a fault of the extension `name` in its room (the owner
/// told once, the notice holding `reason`; an empty `reason`: at most once), what it did is
/// undone, and both rooms go on answering.
fn assert_contained(host: &mut TestHost, name: &str, command: &str, reason: &str) {
    say(host, "guest", ROOM, &format!("!hostile {command}"));
    let guest = drain(host, "guest");
    assert_eq!(
        guest.len(),
        1,
        "{command}: only the command itself, echoed: {guest:?}"
    );
    assert!(guest[0].contains(&format!("!hostile {command}")));
    let owner = drain(host, "owner");
    let told = notices(&owner);
    if reason.is_empty() {
        // A log flood is cut by the host; whether copying it in runs out of time depends on
        // the machine: at most one fault, and the room goes on.
        assert!(told.len() <= 1, "{command}: {owner:?}");
    } else {
        assert_eq!(
            told.len(),
            1,
            "{command}: the owner is told once: {owner:?}"
        );
        assert!(
            told[0].contains(&format!("'{name}'")) && told[0].contains(reason),
            "{command}: {}",
            told[0]
        );
        assert!(told[0].contains("to='owner@localhost'"), "{}", told[0]);
    }
    assert!(
        !owner.iter().any(|s| s.contains("flood 0")),
        "the flood's messages are undone"
    );
    // The room still answers, and so does the room next door.
    say(host, "guest", ROOM, "still here");
    assert!(drain(host, "guest")[0].contains("still here"));
    say(host, "calm-owner", CALM, "calm as ever");
    let calm = drain(host, "calm-owner");
    assert_eq!(calm.len(), 1, "{calm:?}");
    assert!(calm[0].contains("calm as ever"));
    drain(host, "owner");
}

#[test]
fn the_sandbox_has_no_files_network_or_environment_and_says_only_text_in_its_room() {
    let mut host = hostile_host(limits());
    say(&mut host, "guest", ROOM, "!hostile escape");
    let guest = drain(&mut host, "guest");
    assert!(
        guest[1].contains("escape: fs=denied dir=denied net=denied env=0"),
        "{guest:?}"
    );
    say(&mut host, "guest", ROOM, "!hostile inject");
    let guest = drain(&mut host, "guest");
    let said: Element = guest[1].parse().unwrap();
    assert_eq!(said.attr("from"), Some("lab@conference.localhost/hostile"));
    let body = said.get_child("body", "jabber:client").unwrap().text();
    assert!(
        body.starts_with("</body></message><message"),
        "kept as text: {body}"
    );
    assert_eq!(said.children().filter(|c| c.name() == "message").count(), 0);
    assert!(
        drain(&mut host, "calm-owner").is_empty(),
        "nothing reached the other room"
    );
}

#[test]
fn nobody_speaks_as_an_occupant_and_nobody_takes_an_extension_s_nick() {
    let mut host = hostile_host(limits());
    let answer = submit(
        &mut host,
        "owner",
        ROOM,
        &[("extension#hostile#nick", "guest")],
    );
    assert!(
        answer[0].contains("not-acceptable") && answer[0].contains("belongs to an occupant"),
        "{answer:?}"
    );
    host.connect("mallory", "mallory@localhost/m", "").unwrap();
    let refused = join(&mut host, "mallory", ROOM, "hostile");
    assert!(
        refused[0].contains("not-allowed") && refused[0].contains("extension hostile"),
        "{refused:?}"
    );
}

/// What `guest` saw of `!hostile <command>` in `room` (the command echoed, then what it said),
/// and the owners' notices of faults.
fn hostile_command(host: &mut TestHost, room: &str, command: &str) -> (Vec<String>, Vec<String>) {
    say(host, "guest", room, &format!("!hostile {command}"));
    let guest = drain(host, "guest");
    let owner = drain(host, "owner");
    let told = notices(&owner).into_iter().cloned().collect();
    (guest, told)
}

#[test]
fn an_extension_s_instances_get_the_memory_granted_it_at_install() {
    let mut strict = hostile_host(limits());
    let (_, told) = hostile_command(&mut strict, ROOM, "grow");
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("memory cap of 16 MiB"), "{}", told[0]);

    let asked = AskedLimits {
        memory_mib: Some(32),
        ..AskedLimits::default()
    };
    let mut granted = hostile_host_asking(limits(), asked);
    let (guest, told) = hostile_command(&mut granted, ROOM, "grow");
    assert!(told.is_empty(), "{told:?}");
    assert!(guest.iter().any(|s| s.contains("grew 20 MiB")), "{guest:?}");
}

#[test]
fn an_extension_keeps_at_most_its_granted_instances_alive() {
    const LOBBY: &str = "lobby@conference.localhost";
    let instance_calls = |asked: AskedLimits| {
        let mut host = hostile_host_asking(limits(), asked);
        // A second room with it on, owned by the calm room's owner.
        join(&mut host, "calm-owner", LOBBY, "calm");
        submit(
            &mut host,
            "calm-owner",
            LOBBY,
            &[("extension#hostile", "1")],
        );
        join(&mut host, "guest", LOBBY, "guest");
        drain(&mut host, "calm-owner");
        let mut said = Vec::new();
        for room in [ROOM, LOBBY, ROOM] {
            let (guest, told) = hostile_command(&mut host, room, "instance");
            assert!(told.is_empty(), "{told:?}");
            said.extend(guest.into_iter().filter_map(|s| {
                s.find("instance call ")
                    .map(|at| s[at..at + "instance call 1".len()].to_string())
            }));
        }
        said
    };
    // Each room's instance lives on: the lab's answers its second call.
    assert_eq!(
        instance_calls(AskedLimits::default()),
        ["instance call 1", "instance call 1", "instance call 2"]
    );
    // One instance at a time: the lobby's replaced the lab's, which starts over.
    let one = AskedLimits {
        instances: Some(1),
        ..AskedLimits::default()
    };
    assert_eq!(
        instance_calls(one),
        ["instance call 1", "instance call 1", "instance call 1"]
    );
}

#[test]
fn limits_over_the_operator_s_ceilings_are_refused_naming_the_ceiling() {
    let operator = ExtensionLimits {
        max_memory_bytes: 24 << 20,
        ..limits()
    };
    let compiler = ExtensionCompiler::new(None, operator).unwrap();
    let bytes = std::fs::read(component("hostile_extension")).unwrap();
    let asked = |memory_mib| AskedLimits {
        memory_mib: Some(memory_mib),
        ..AskedLimits::default()
    };
    let refused = compiler.compile_asking(&bytes, asked(32)).err().unwrap();
    assert!(
        format!("{refused:#}").contains("ceiling of 24 MiB (--extension-max-memory-mib)"),
        "{refused:#}"
    );
    let compiled = compiler.compile_asking(&bytes, asked(24)).unwrap();
    assert_eq!(compiled.entry.limits, asked(24));
    assert_eq!(compiled.limits.memory_bytes, 24 << 20);
}

#[test]
fn after_the_configured_number_of_faults_the_extension_is_switched_off_in_that_room_only() {
    let mut host = hostile_host(ExtensionLimits::default());
    for fault in 1..=3 {
        say(&mut host, "guest", ROOM, "!hostile panic");
        let owner = drain(&mut host, "owner");
        let told = notices(&owner);
        assert!(
            told[0].contains(&format!("fault {fault} of 3")),
            "{}",
            told[0]
        );
        assert_eq!(told[0].contains("switched off"), fault == 3, "{}", told[0]);
    }
    say(&mut host, "guest", ROOM, "!hostile panic");
    assert!(
        notices(&drain(&mut host, "owner")).is_empty(),
        "off: no more hooks, no more faults"
    );
    assert_eq!(
        drain(&mut host, "guest").len(),
        3 + 1,
        "every message went through"
    );
    host.send(
        "owner",
        stanza("<iq xmlns='jabber:client' type='get' id='f' to='lab@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"),
    )
    .unwrap();
    let form = drain(&mut host, "owner").join("");
    assert!(
        form.contains("var='extension#hostile'><value>0</value>"),
        "{form}"
    );
    // An owner switches it on again: the count starts over.
    submit(&mut host, "owner", ROOM, &[("extension#hostile", "1")]);
    say(&mut host, "guest", ROOM, "!hostile panic");
    let told = notices(&drain(&mut host, "owner"))
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    assert!(told[0].contains("fault 1 of 3"), "{told:?}");
}

#[test]
fn a_failing_filter_lets_messages_through_unless_the_owner_chose_fail_closed() {
    let mut host = hostile_host(limits());
    for body in ["trap", "huge"] {
        say(&mut host, "guest", ROOM, body);
        let guest = drain(&mut host, "guest");
        assert!(
            guest[0].contains(&format!("<body>{body}</body>")),
            "fail-open: {guest:?}"
        );
    }
    submit(
        &mut host,
        "owner",
        ROOM,
        &[("extension#hostile#fail-closed", "1")],
    );
    drain(&mut host, "guest");
    say(&mut host, "guest", ROOM, "trap");
    let guest = drain(&mut host, "guest");
    assert_eq!(guest.len(), 1, "{guest:?}");
    assert!(
        guest[0].contains("policy-violation") && guest[0].contains("extension hostile failed"),
        "{guest:?}"
    );
    // A join hook that never returns: fail-closed refuses, fail-open admits.
    host.connect("slow", "slow@localhost/s", "").unwrap();
    let refused = join(&mut host, "slow", ROOM, "slowpoke");
    assert!(refused[0].contains("not-allowed"), "{refused:?}");
    submit(
        &mut host,
        "owner",
        ROOM,
        &[("extension#hostile#fail-closed", "0")],
    );
    let admitted = join(&mut host, "slow", ROOM, "slowpoke");
    assert!(
        admitted.iter().any(|s| s.contains("code='110'")),
        "{admitted:?}"
    );
}

#[test]
fn ticks_come_at_the_extension_s_interval() {
    let mut host = host_with(&["probe_extension"], limits());
    room(&mut host, ROOM, &[("extension#probe", "1")]);
    drain(&mut host, "guest");
    host.clock().advance_ms(59_000);
    host.run_due_timers().unwrap();
    assert!(drain(&mut host, "guest").is_empty(), "not yet");
    host.clock().advance_ms(2_000);
    host.run_due_timers().unwrap();
    let guest = drain(&mut host, "guest");
    assert_eq!(guest.len(), 1, "{guest:?}");
    assert!(
        guest[0].contains("from='lab@conference.localhost/probe'")
            && guest[0].contains("<body>tick</body>")
    );
    host.clock().advance_ms(61_000);
    host.run_due_timers().unwrap();
    assert!(
        drain(&mut host, "guest")[0].contains("<body>tick</body>"),
        "and again"
    );
    // Switched off: no more ticks.
    submit(&mut host, "owner", ROOM, &[("extension#probe", "0")]);
    drain(&mut host, "guest");
    host.clock().advance_ms(120_000);
    host.run_due_timers().unwrap();
    assert!(drain(&mut host, "guest").is_empty());
}

#[test]
fn a_new_version_takes_over_with_the_room_s_settings_and_storage_and_removal_tells_owners() {
    let plugin = compile("muc_plugin");
    let compiler = ExtensionCompiler::new(None, limits()).unwrap();
    let mut host =
        TestHost::with_installed_extensions(plugin, Extensions::new(compiler.clone())).unwrap();
    install(&mut host, &compiler, "probe_extension");
    room(
        &mut host,
        ROOM,
        &[("extension#probe", "1"), ("extension#probe#greeting", "hi")],
    );
    say(&mut host, "guest", ROOM, "!probe count");
    assert!(drain(&mut host, "guest")[1].contains("count 1"));

    let message = install(&mut host, &compiler, "probe_extension_v2");
    assert!(
        message.contains("replaced probe 1.0.0 by 2.0.0"),
        "{message}"
    );
    say(&mut host, "guest", ROOM, "!probe count");
    assert!(
        drain(&mut host, "guest")[1].contains("count 2"),
        "its storage carried over"
    );
    host.clock().advance_ms(61_000);
    host.run_due_timers().unwrap();
    assert!(
        drain(&mut host, "guest")[0].contains("tick v2"),
        "the new version answers"
    );
    host.connect("late", "late@localhost/l", "").unwrap();
    let late = join(&mut host, "late", ROOM, "late");
    assert!(
        late.iter().any(|s| s.contains("hi late")),
        "its settings carried over: {late:?}"
    );
    drain(&mut host, "guest");

    let removed = host
        .service()
        .change_extensions(Change::Remove("probe".into()))
        .unwrap();
    assert!(removed.contains("switched off in 1 room"), "{removed}");
    host.service().flush().unwrap();
    let owner = drain(&mut host, "owner");
    assert!(owner.iter().any(|s| s.contains("uninstalled")), "{owner:?}");
    say(&mut host, "guest", ROOM, "!probe count");
    let guest = drain(&mut host, "guest");
    assert_eq!(guest.len(), 1, "no extension answers any more: {guest:?}");
}

#[test]
fn the_owner_s_choices_survive_a_hot_swap_of_the_muc_plugin() {
    let mut host = host_with(&["probe_extension"], limits());
    room(&mut host, ROOM, &[("extension#probe", "1")]);
    drain(&mut host, "guest");
    let prepared = host
        .service()
        .muc
        .preparer()
        .prepare(
            engine()
                .compile(&component("muc_plugin_swap_test"))
                .unwrap(),
        )
        .unwrap();
    host.service().swap(prepared).unwrap();
    say(&mut host, "guest", ROOM, "[rewrite] after the swap");
    let guest = drain(&mut host, "guest");
    assert!(guest[0].contains("[rewritten] after the swap"), "{guest:?}");
}

#[test]
fn the_catalog_and_the_owner_s_choices_survive_a_restart() {
    use std::sync::Arc;

    use muc_host::clock::SystemClock;
    use muc_host::router::{QueueSink, Router};
    use muc_host::runtime::{PluginRuntime, Settings};
    use muc_host::service::Service;
    use muc_host::storage::{Storage, StoreLocation};

    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let plugin = compile("muc_plugin");
        let compiler = ExtensionCompiler::new(None, limits()).unwrap();
        let mut storage = Storage::open(&StoreLocation::Sqlite(dir.path().into())).unwrap();
        let mut extensions = Extensions::new(compiler.clone());
        extensions.load(&mut storage);
        let settings = Settings {
            service: "conference.localhost".into(),
            ..Settings::default()
        };
        let muc = PluginRuntime::start(
            plugin,
            storage,
            Some(extensions),
            settings,
            Arc::new(SystemClock),
        )
        .unwrap();
        let mut service = Service::new(Router::new("localhost", "conference.localhost"), muc);
        let sink = QueueSink::default();
        service.connect("owner@localhost/a".parse().unwrap(), Box::new(sink.clone()));
        (service, sink, compiler)
    };
    let send = |service: &mut Service, xml: &str| {
        service.from_client(&"owner@localhost/a".parse().unwrap(), stanza(xml));
        service.flush().unwrap();
    };
    {
        let (mut service, _sink, compiler) = start();
        let bytes = std::fs::read(component("probe_extension")).unwrap();
        let compiled = compiler.compile(&bytes).unwrap();
        service
            .change_extensions(Change::Install {
                compiled: Box::new(compiled),
                rooms: None,
            })
            .unwrap();
        send(&mut service, "<presence xmlns='jabber:client' to='lab@conference.localhost/boss'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
        send(&mut service, "<iq xmlns='jabber:client' type='set' id='c' to='lab@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='extension#probe'><value>1</value></field></x></query></iq>");
    }
    let (mut service, sink, _) = start();
    send(&mut service, "<presence xmlns='jabber:client' to='lab@conference.localhost/boss'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    send(&mut service, "<message xmlns='jabber:client' type='groupchat' to='lab@conference.localhost'><body>[rewrite] after a restart</body></message>");
    let received: Vec<String> = std::iter::from_fn(|| sink.pop())
        .map(|stanza| String::from(&stanza))
        .collect();
    assert!(
        received
            .iter()
            .any(|s| s.contains("[rewritten] after a restart")),
        "{received:?}"
    );
}

#[test]
fn a_fail_closed_extension_that_failed_keeps_the_room_refusing_until_an_owner_acts() {
    let mut host = hostile_host(ExtensionLimits::default());
    submit(
        &mut host,
        "owner",
        ROOM,
        &[("extension#hostile#fail-closed", "1")],
    );
    drain(&mut host, "guest");
    for _ in 0..3 {
        say(&mut host, "guest", ROOM, "trap");
    }
    let owner = drain(&mut host, "owner");
    let told = notices(&owner);
    assert!(
        told[2].contains("fault 3 of 3") && told[2].contains("fail-closed"),
        "{told:?}"
    );
    say(&mut host, "guest", ROOM, "harmless");
    let guest = drain(&mut host, "guest");
    assert!(
        guest.last().unwrap().contains("policy-violation"),
        "still refused: {guest:?}"
    );
    assert!(
        notices(&drain(&mut host, "owner")).is_empty(),
        "and not run again"
    );
    submit(&mut host, "owner", ROOM, &[("extension#hostile", "0")]);
    drain(&mut host, "guest");
    say(&mut host, "guest", ROOM, "harmless");
    assert!(drain(&mut host, "guest")[0].contains("<body>harmless</body>"));
}

#[test]
fn what_the_filters_judge_is_the_only_body_anyone_reads() {
    let mut host = host_with(&["probe_extension"], limits());
    room(&mut host, ROOM, &[("extension#probe", "1")]);
    drain(&mut host, "guest");
    host.send(
        "guest",
        stanza("<message xmlns='jabber:client' type='groupchat' to='lab@conference.localhost'><body>[rewrite] one</body><body xml:lang='de'>[rewrite] zwei</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>[rewrite] html</body></html></message>"),
    )
    .unwrap();
    let owner = drain(&mut host, "owner");
    let relayed: Element = owner[0].parse().unwrap();
    let bodies: Vec<String> = relayed
        .children()
        .filter(|c| c.is("body", "jabber:client"))
        .map(Element::text)
        .collect();
    assert_eq!(bodies, ["[rewritten] one"]);
    assert!(!owner[0].contains("xhtml-im"), "{}", owner[0]);
}

#[test]
fn a_kicked_occupant_leaves_for_the_extensions_too() {
    let mut host = host_with(&["probe_extension"], limits());
    room(&mut host, ROOM, &[("extension#probe", "1")]);
    drain(&mut host, "guest");
    host.send(
        "owner",
        stanza("<iq xmlns='jabber:client' type='set' id='k' to='lab@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='guest' role='none'/></query></iq>"),
    )
    .unwrap();
    let owner = drain(&mut host, "owner");
    assert!(
        owner.iter().any(|s| s.contains("<body>bye guest</body>")),
        "{owner:?}"
    );
}

#[test]
fn a_creator_refused_by_an_extension_leaves_no_room_behind() {
    let plugin = compile("muc_plugin");
    let compiler = ExtensionCompiler::new(None, limits()).unwrap();
    let probe = compiler
        .compile(&std::fs::read(component("probe_extension")).unwrap())
        .unwrap();
    // Switched on in every room, new ones included, as `muc-host check --extension` does.
    let mut host = TestHost::with_extensions(plugin, &compiler, &[probe]).unwrap();
    host.connect("intruder", "intruder@localhost/x", "")
        .unwrap();
    let refused = join(&mut host, "intruder", ROOM, "intruder");
    assert!(refused[0].contains("not-allowed"), "{refused:?}");
    host.connect("owner", "owner@localhost/a", "").unwrap();
    let created = join(&mut host, "owner", ROOM, "boss");
    assert!(
        created[0].contains("code='201'"),
        "the room is made anew, not left locked for the refused creator: {created:?}"
    );
}

/// A message's hooks are given every occupant only where an enabled extension reads them (its
/// manifest says `reads-occupants`); otherwise only those holding a nick an extension speaks as (what it says is checked against them), so an extension costs
/// per message, not per occupant.
#[test]
fn only_extensions_that_read_the_room_make_each_message_carry_every_occupant() {
    let compiler = ExtensionCompiler::new(None, limits()).unwrap();
    let compiled = |name| {
        let bytes = std::fs::read(component(name)).unwrap();
        compiler.compile(&bytes).unwrap()
    };
    assert!(compiled("probe_extension").entry.reads_occupants);
    assert!(!compiled("ext_word_filter").entry.reads_occupants);
    assert!(!compiled("ext_slow_mode").entry.reads_occupants);
    assert!(!compiled("ext_dice").entry.reads_occupants);
    assert!(
        compiled("ext_dice").entry.nick.is_some(),
        "the dice bot speaks"
    );

    let mut storage = Place::holding(Storage::in_memory());
    let mut txn = Transaction::default();
    let mut extensions = Extensions::new(compiler.clone());
    let mut need = |extensions: &Extensions| {
        let mut call = Call::new(&mut storage, &mut txn, 0).unwrap();
        extensions.message_hooks(&mut call, ROOM)
    };
    assert!(matches!(need(&extensions), MessageHooksNeed::None));
    extensions.install_everywhere(compiled("ext_word_filter"));
    extensions.install_everywhere(compiled("ext_slow_mode"));
    assert!(
        matches!(need(&extensions), MessageHooksNeed::OccupantsNamed(nicks) if nicks.is_empty())
    );
    extensions.install_everywhere(compiled("ext_dice"));
    assert!(
        matches!(need(&extensions), MessageHooksNeed::OccupantsNamed(nicks) if nicks == ["dice"])
    );
    let mut reading = Extensions::new(compiler.clone());
    reading.install_everywhere(compiled("probe_extension"));
    assert!(matches!(need(&reading), MessageHooksNeed::WithOccupants));
}

/// An extension switched on by default (as `muc-host check --extension` runs them) in a room
/// where an occupant already holds its nick: what it says is a fault, never a message under the
/// occupant's name, although a message there carries only the occupants holding speakers' nicks.
#[test]
fn an_extension_never_speaks_under_an_occupant_s_nickname() {
    let plugin = compile("muc_plugin");
    let compiler = ExtensionCompiler::new(None, limits()).unwrap();
    let extensions = Extensions::new(compiler.clone());
    let mut host = TestHost::with_installed_extensions(plugin, extensions).unwrap();
    room(&mut host, ROOM, &[]);
    host.connect("namesake", "namesake@localhost/n", "")
        .unwrap();
    join(&mut host, "namesake", ROOM, "dice");
    let dice = compiler
        .compile(&std::fs::read(component("ext_dice")).unwrap())
        .unwrap();
    host.service()
        .muc
        .extensions_mut()
        .unwrap()
        .install_everywhere(dice);
    drain(&mut host, "owner");
    drain(&mut host, "guest");

    say(&mut host, "guest", ROOM, "!roll");
    let heard = drain(&mut host, "guest");
    assert!(heard.iter().any(|s| s.contains("!roll")), "{heard:?}");
    assert!(!heard.iter().any(|s| s.contains("rolled")), "{heard:?}");
    let told = drain(&mut host, "owner");
    let told = notices(&told);
    assert!(
        told.len() == 1 && told[0].contains("tried to speak as 'dice'"),
        "{told:?}"
    );
}

/// Every stanza as its recipient reads it, each checked to parse again (a stream stays
/// well-formed only if each stanza does).
fn drain_parsed(host: &mut TestHost, client: &str) -> Vec<Element> {
    drain(host, client)
        .iter()
        .map(|xml| {
            xml.parse().unwrap_or_else(|error| {
                panic!("{client} got a stanza that does not parse: {error}: {xml:?}")
            })
        })
        .collect()
}

fn body(stanza: &Element) -> Option<String> {
    stanza.get_child("body", "jabber:client").map(Element::text)
}

/// A rewrite, a refusal or a message holding a character XML 1.0 cannot carry is the
/// extension's fault, caught where the host receives it: counted and told to the owners, and
/// fail-open the message or join goes through as sent; nobody's stream gets the character.
#[test]
fn text_xml_cannot_carry_from_an_extension_is_its_fault_and_fail_open_lets_through() {
    let mut host = hostile_host(limits());
    let cases = [
        (
            "control",
            "it rewrote a message into a character XML cannot carry (U+0001)",
        ),
        (
            "nonchar",
            "it rewrote a message into a character XML cannot carry (U+FFFE)",
        ),
        (
            "reject-control",
            "it refused with a character XML cannot carry (U+0001)",
        ),
        (
            "!hostile control",
            "a message with a character XML cannot carry (U+0001)",
        ),
    ];
    for (fault, (sent, why)) in cases.into_iter().enumerate() {
        say(&mut host, "guest", ROOM, sent);
        let guest = drain_parsed(&mut host, "guest");
        assert_eq!(
            guest.len(),
            1,
            "{sent}: only the message, as sent: {guest:?}"
        );
        assert_eq!(
            guest[0].attr("type"),
            Some("groupchat"),
            "{sent}: {guest:?}"
        );
        assert_eq!(body(&guest[0]).as_deref(), Some(sent));
        let owner = drain_parsed(&mut host, "owner");
        let relayed: Vec<_> = owner
            .iter()
            .filter(|s| s.attr("type") == Some("groupchat"))
            .collect();
        assert_eq!(relayed.len(), 1, "{sent}: {owner:?}");
        assert_eq!(body(relayed[0]).as_deref(), Some(sent));
        let told: Vec<String> = owner
            .iter()
            .filter(|s| s.attr("type") == Some("normal"))
            .filter_map(body)
            .collect();
        assert_eq!(told.len(), 1, "{sent}: the owners are told once: {owner:?}");
        assert!(
            told[0].contains("'hostile'")
                && told[0].contains(why)
                && told[0].contains(&format!("(fault {} of 100)", fault + 1)),
            "{sent}: {}",
            told[0]
        );
    }
    host.connect("odd", "odd@localhost/o", "").unwrap();
    let admitted = join(&mut host, "odd", ROOM, "uncarriable");
    assert!(
        admitted.iter().any(|s| s.contains("code='110'")),
        "fail-open admits: {admitted:?}"
    );
    let told: Vec<String> = drain_parsed(&mut host, "owner")
        .iter()
        .filter_map(body)
        .collect();
    assert!(
        told.iter().any(
            |t| t.contains("it refused with a character XML cannot carry (U+FFFF)")
                && t.contains("(fault 5 of 100)")
        ),
        "{told:?}"
    );
}

#[test]
fn text_xml_cannot_carry_from_a_fail_closed_extension_is_refused_and_counts_to_its_limit() {
    let mut host = hostile_host(ExtensionLimits::default());
    submit(
        &mut host,
        "owner",
        ROOM,
        &[("extension#hostile#fail-closed", "1")],
    );
    drain(&mut host, "guest");
    drain(&mut host, "owner");
    for (fault, sent) in ["control", "nonchar", "reject-control"]
        .into_iter()
        .enumerate()
    {
        say(&mut host, "guest", ROOM, sent);
        let guest = drain_parsed(&mut host, "guest");
        assert_eq!(guest.len(), 1, "{sent}: {guest:?}");
        assert_eq!(guest[0].attr("type"), Some("error"), "{sent}: {guest:?}");
        let error = String::from(&guest[0]);
        assert!(
            error.contains("policy-violation") && error.contains("extension hostile failed"),
            "{sent}: {error}"
        );
        let told: Vec<String> = drain_parsed(&mut host, "owner")
            .iter()
            .filter_map(body)
            .collect();
        assert_eq!(
            told.len(),
            1,
            "{sent}: nothing relayed, the owners told: {told:?}"
        );
        assert!(
            told[0].contains(&format!("fault {} of 3", fault + 1)),
            "{}",
            told[0]
        );
    }
    // Three faults: it no longer runs, and the room refuses what it would have checked.
    say(&mut host, "guest", ROOM, "harmless");
    let guest = drain(&mut host, "guest");
    assert!(guest[0].contains("policy-violation"), "{guest:?}");
    assert!(drain(&mut host, "owner").is_empty(), "not run again");
}

/// Markup an extension returns is text: escaped in every copy, never an element.
#[test]
fn a_rewrite_that_looks_like_markup_arrives_as_text() {
    let mut host = hostile_host(limits());
    say(&mut host, "guest", ROOM, "markup");
    for client in ["guest", "owner"] {
        let received = drain_parsed(&mut host, client);
        assert_eq!(received.len(), 1, "{client}: {received:?}");
        let message = &received[0];
        assert_eq!(
            body(message).as_deref(),
            Some("</body><x xmlns='urn:hostile'>owned</x><body>"),
            "{client}"
        );
        assert_eq!(
            message
                .children()
                .filter(|c| c.name() == "x" || c.name() == "body")
                .count(),
            1
        );
        assert!(!message.has_child("x", "urn:hostile"));
    }
}
