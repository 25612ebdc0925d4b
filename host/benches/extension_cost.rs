//! What room extensions cost, in time and memory, with one extension of each language the README
//! teaches (Rust: word-filter; Python: link-guard; JavaScript: poll).
//!
//! - A groupchat message into a room of 100 occupants with none, one Rust, one Python, one
//!   JavaScript and three Rust extensions (word filter, slow mode, dice) switched on, through the
//!   whole service core, from a stanza in to every recipient's bytes out. The configurations are
//!   measured in alternating rounds and the median round is kept, so machine noise hits them
//!   alike.
//! - Per (extension, room): the time a new room's creator takes to join (its join makes the
//!   extension's instance and runs its on-join) over the same with no extension, and the resident
//!   memory that [`ROOMS`] such rooms add (`/proc/self/smaps_rollup`) over the same rooms with no
//!   extension, divided by their number.
//! - Installing each: compiling without the cache, then its describe.
//! - How many rooms with the Python extension on (one live instance each) fit in 1 GiB, computed
//!   from the measured resident memory per room.
//!
//! Prints figures; asserts nothing about time. The Python and JavaScript components are built by
//! scripts/build-python-extensions and scripts/build-js-extensions (CI builds them first).
//!
//!     cargo bench -p muc-host --bench extension_cost --profile release
//!
//! `EXTENSION_COST_ONLY=NAME` (a row of the first table: none, word-filter, link-guard, poll or
//! three) runs that configuration alone, for a profiler: under callgrind,
//! `--toggle-collect='*Room::round*'` counts the measured messages' instructions only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::FullJid;
use minidom::Element;
use muc_host::clock::SystemClock;
use muc_host::extensions::{Compiled, ExtensionCompiler, ExtensionLimits, Extensions};
use muc_host::router::{QueueSink, Router};
use muc_host::runtime::{CompiledPlugin, PluginEngine, PluginRuntime, Settings};
use muc_host::service::Service;
use muc_host::storage::Storage;

const ROOM: &str = "bench@conference.localhost";
const OCCUPANTS: usize = 100;
const ROUNDS: usize = 9;
const MESSAGES_PER_ROUND: usize = 100;
/// Rooms made per language for the instance figures.
const ROOMS: usize = 40;
const GIB: f64 = (1u64 << 30) as f64;

/// The example extension of each language: its component and what builds it.
const LANGUAGES: [(&str, &str, &str); 3] = [
    ("Rust", "ext_word_filter", "scripts/build-all"),
    (
        "Python",
        "ext_link_guard",
        "scripts/build-python-extensions",
    ),
    ("JavaScript", "ext_poll", "scripts/build-js-extensions"),
];

fn service(plugin: &CompiledPlugin, extensions: Extensions) -> Service {
    let settings = Settings {
        service: "conference.localhost".into(),
        ..Settings::default()
    };
    let muc = PluginRuntime::start(
        plugin.clone(),
        Storage::in_memory(),
        Some(extensions),
        settings,
        Arc::new(SystemClock),
    )
    .unwrap();
    Service::new(Router::new("localhost", "conference.localhost"), muc)
}

fn send(service: &mut Service, from: &FullJid, xml: &str) {
    let stanza: Element = xml.parse().unwrap();
    service.from_client(from, stanza);
    service.flush().unwrap();
}

struct Room {
    service: Service,
    users: Vec<(FullJid, QueueSink)>,
}

impl Room {
    fn new(plugin: &CompiledPlugin, extensions: Extensions) -> Room {
        let mut room = Room {
            service: service(plugin, extensions),
            users: Vec::new(),
        };
        for n in 0..OCCUPANTS {
            let jid: FullJid = format!("user{n}@localhost/bench").parse().unwrap();
            let sink = QueueSink::default();
            room.service.connect(jid.clone(), Box::new(sink.clone()));
            room.users.push((jid.clone(), sink));
            room.send(&jid, &format!("<presence xmlns='jabber:client' to='{ROOM}/user{n}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"));
            if n == 0 {
                room.send(&jid, &format!("<iq xmlns='jabber:client' type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
            }
        }
        room.drain();
        room
    }

    fn send(&mut self, from: &FullJid, xml: &str) {
        send(&mut self.service, from, xml);
    }

    fn drain(&mut self) -> usize {
        let mut delivered = 0;
        for (_, sink) in &self.users {
            // As the client connection writes them (a broadcast serialised once, for all).
            while let Some(stanza) = sink.pop_outbound() {
                let mut bytes = String::new();
                stanza.write(&mut bytes);
                std::hint::black_box(bytes);
                delivered += 1;
            }
        }
        delivered
    }

    /// Time per message over one round; the sender (the owner, a moderator) is exempt from slow
    /// mode and the link guard, and the body has no filtered word and no command: every message
    /// reaches everyone.
    fn round(&mut self, first: usize) -> Duration {
        let sender = self.users[0].0.clone();
        let started = Instant::now();
        for i in first..first + MESSAGES_PER_ROUND {
            self.send(&sender, &format!("<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='m{i}'><body>Message number {i}, of an ordinary length for a chat line.</body></message>"));
            assert_eq!(self.drain(), OCCUPANTS, "every occupant got the message");
        }
        started.elapsed() / MESSAGES_PER_ROUND as u32
    }
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The process's resident memory, in bytes.
fn resident_bytes() -> f64 {
    let rollup =
        std::fs::read_to_string("/proc/self/smaps_rollup").expect("/proc/self/smaps_rollup");
    let kib: f64 = rollup
        .lines()
        .find_map(|line| line.strip_prefix("Rss:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("an Rss line");
    kib * 1024.0
}

/// [`ROOMS`] new rooms, each created by one owner with `extension` (if any) on in every room:
/// the median time of a creator's join, and the resident memory the rooms added, per room.
fn new_rooms(
    plugin: &CompiledPlugin,
    compiler: &ExtensionCompiler,
    extension: Option<&Compiled>,
) -> (f64, f64) {
    let mut extensions = Extensions::new(compiler.clone());
    if let Some(extension) = extension {
        extensions.install_everywhere(extension.clone());
    }
    let mut service = service(plugin, extensions);
    let owner: FullJid = "owner@localhost/bench".parse().unwrap();
    let sink = QueueSink::default();
    service.connect(owner.clone(), Box::new(sink.clone()));
    let before = resident_bytes();
    let mut joins = Vec::new();
    for n in 0..ROOMS {
        let room = format!("room{n}@conference.localhost");
        let started = Instant::now();
        send(&mut service, &owner, &format!("<presence xmlns='jabber:client' to='{room}/owner'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
        joins.push(started.elapsed().as_secs_f64() * 1e6);
        send(&mut service, &owner, &format!("<iq xmlns='jabber:client' type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
        send(&mut service, &owner, &format!("<message xmlns='jabber:client' type='groupchat' to='{room}' id='m'><body>The first message in {room}.</body></message>"));
        while sink.pop_outbound().is_some() {}
    }
    let added = (resident_bytes() - before) / ROOMS as f64;
    (median(&mut joins), added)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let components = root.join("target/wasm32-wasip2/component");
    let engine = PluginEngine::new(Some(root.join("target/bench-cache"))).unwrap();
    let plugin = engine
        .compile(&components.join("muc_plugin.wasm"))
        .expect("the component (bash scripts/build)");
    let limits = ExtensionLimits::default();
    let compiler = ExtensionCompiler::new(Some(root.join("target/bench-cache")), limits).unwrap();
    let read = |name: &str, built_by: &str| -> Vec<u8> {
        let path: PathBuf = components.join(format!("{name}.wasm"));
        std::fs::read(&path).unwrap_or_else(|error| {
            panic!(
                "{}: {error}: build it first with {built_by}",
                path.display()
            )
        })
    };
    let compile = |name: &str, built_by: &str| compiler.compile(&read(name, built_by)).unwrap();
    let [rust, python, javascript] = LANGUAGES.map(|(_, name, built_by)| compile(name, built_by));
    let slow_mode = compile("ext_slow_mode", "scripts/build-all");
    let dice = compile("ext_dice", "scripts/build-all");

    let only = std::env::var("EXTENSION_COST_ONLY").ok();
    let configurations: Vec<(&str, Vec<&Compiled>)> = [
        ("none", vec![]),
        ("word-filter", vec![&rust]),
        ("link-guard", vec![&python]),
        ("poll", vec![&javascript]),
        ("three", vec![&rust, &slow_mode, &dice]),
    ]
    .into_iter()
    .filter(|(name, _)| only.as_deref().is_none_or(|only| only == *name))
    .collect();
    assert!(
        !configurations.is_empty(),
        "EXTENSION_COST_ONLY: none, word-filter, link-guard, poll or three"
    );
    let mut rooms: Vec<Room> = configurations
        .iter()
        .map(|(_, installed)| {
            let mut extensions = Extensions::new(compiler.clone());
            for extension in installed {
                extensions.install_everywhere((*extension).clone());
            }
            Room::new(&plugin, extensions)
        })
        .collect();
    for room in &mut rooms {
        room.round(0);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); rooms.len()];
    for round in 1..=ROUNDS {
        for (room, times) in rooms.iter_mut().zip(&mut times) {
            times.push(room.round(round * MESSAGES_PER_ROUND).as_secs_f64() * 1e6);
        }
    }
    drop(rooms);
    println!("groupchat message into a room of {OCCUPANTS} occupants, median of {ROUNDS} rounds of {MESSAGES_PER_ROUND}");
    println!(
        "{:<40} {:>14} {:>12} {:>12}",
        "extensions switched on", "µs per message", "over none", "µs over none"
    );
    // The first configuration is the one without extensions, unless another ran alone.
    let baseline = (configurations[0].0 == "none").then(|| median(&mut times[0].clone()));
    for ((name, installed), times) in configurations.iter().zip(&mut times) {
        let label = match *name {
            "none" => "no extension".to_string(),
            "three" => "word-filter, slow-mode, dice (Rust)".to_string(),
            _ => format!(
                "{name} ({})",
                language(installed[0], &[&rust, &python, &javascript])
            ),
        };
        let micros = median(times);
        match baseline {
            Some(baseline) => println!(
                "{label:<40} {micros:>14.1} {:>+11.1}% {:>+12.1}",
                (micros / baseline - 1.0) * 100.0,
                micros - baseline
            ),
            None => println!("{label:<40} {micros:>14.1}"),
        }
    }
    if only.is_some() {
        return;
    }

    println!();
    println!("per (extension, room), over a room without extensions ({ROOMS} new rooms each)");
    println!(
        "{:<24} {:>22} {:>20} {:>16}",
        "extension", "instantiation µs", "resident MiB/room", "install ms"
    );
    let (join_alone, resident_alone) = new_rooms(&plugin, &compiler, None);
    let uncached = ExtensionCompiler::new(None, limits).unwrap();
    let mut python_per_room = 0.0;
    for ((language, name, built_by), compiled) in
        LANGUAGES.iter().zip([&rust, &python, &javascript])
    {
        let (join, resident) = new_rooms(&plugin, &compiler, Some(compiled));
        let bytes = read(name, built_by);
        let started = Instant::now();
        uncached.compile(&bytes).unwrap();
        let install = started.elapsed();
        let per_room = resident - resident_alone;
        if *language == "Python" {
            python_per_room = per_room;
        }
        println!(
            "{:<24} {:>22.0} {:>20.2} {:>16.0}",
            format!("{} ({language})", compiled.entry.name),
            join - join_alone,
            per_room / (1 << 20) as f64,
            install.as_secs_f64() * 1e3
        );
    }
    println!(
        "rooms with link-guard (Python) on that fit in 1 GiB, one live instance each: {:.0} \
         (1 GiB / the resident memory per room measured above, computed)",
        GIB / python_per_room
    );
}

fn language(extension: &Compiled, by_language: &[&Compiled; 3]) -> &'static str {
    let index = by_language
        .iter()
        .position(|candidate| candidate.entry.name == extension.entry.name)
        .expect("an example extension");
    LANGUAGES[index].0
}
