//! What room extensions cost: a groupchat message into a room of 100 occupants with 0, 1 and 3
//! extensions switched on (the word filter; then also slow mode and the dice bot), through the
//! whole service core, from a stanza in to every recipient's bytes out. The configurations are
//! measured in alternating rounds and the median round is kept, so machine noise hits them alike.
//! Prints figures; asserts nothing about time.
//!
//!     cargo bench -p muc-host --bench extension_cost --profile release
//!
//! `EXTENSION_COST_ONLY=N` (0, 1 or 3) runs that configuration alone, for a profiler: under
//! callgrind, `--toggle-collect='*Room::round*'` counts the measured messages' instructions only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::FullJid;
use minidom::Element;
use muc_host::clock::SystemClock;
use muc_host::extensions::{ExtensionCompiler, ExtensionLimits, Extensions};
use muc_host::router::{QueueSink, Router};
use muc_host::runtime::{CompiledPlugin, PluginEngine, PluginRuntime, Settings};
use muc_host::service::Service;
use muc_host::storage::Storage;

const ROOM: &str = "bench@conference.localhost";
const OCCUPANTS: usize = 100;
const ROUNDS: usize = 9;
const MESSAGES_PER_ROUND: usize = 100;

struct Room {
    service: Service,
    users: Vec<(FullJid, QueueSink)>,
}

impl Room {
    fn new(plugin: &CompiledPlugin, extensions: Extensions) -> Room {
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
        let mut room = Room {
            service: Service::new(Router::new("localhost", "conference.localhost"), muc),
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
        let stanza: Element = xml.parse().unwrap();
        self.service.from_client(from, stanza);
        self.service.flush().unwrap();
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
    /// mode, and the body has no filtered word: every message reaches everyone.
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

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let components = root.join("target/wasm32-wasip2/component");
    let engine = PluginEngine::new(Some(root.join("target/bench-cache"))).unwrap();
    let plugin = engine
        .compile(&components.join("muc_plugin.wasm"))
        .expect("the component (bash scripts/build)");
    let compiler = ExtensionCompiler::new(
        engine.engine(),
        Some(root.join("target/bench-cache")),
        ExtensionLimits::default(),
    )
    .unwrap();
    let compile = |name: &str| {
        let path: PathBuf = components.join(format!("{name}.wasm"));
        compiler
            .compile(&std::fs::read(&path).expect("the example extensions (bash scripts/build)"))
            .unwrap()
    };
    let examples = [
        compile("ext_word_filter"),
        compile("ext_slow_mode"),
        compile("ext_dice"),
    ];
    let only: Option<usize> = std::env::var("EXTENSION_COST_ONLY")
        .ok()
        .map(|n| n.parse().expect("EXTENSION_COST_ONLY: 0, 1 or 3"));
    let configurations: Vec<(&str, usize)> = [
        ("no extension", 0),
        ("word-filter", 1),
        ("word-filter, slow-mode, dice", 3),
    ]
    .into_iter()
    .filter(|(_, count)| only.is_none_or(|only| only == *count))
    .collect();
    let mut rooms: Vec<Room> = configurations
        .iter()
        .map(|(_, count)| {
            let mut extensions = Extensions::new(compiler.clone());
            for extension in &examples[..*count] {
                extensions.install_everywhere(extension.clone());
            }
            Room::new(&plugin, extensions)
        })
        .collect();
    for room in &mut rooms {
        room.round(0);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); rooms.len()];
    for round in 1..=ROUNDS {
        for (room, times) in rooms.iter_mut().zip(&mut times) {
            times.push(room.round(round * MESSAGES_PER_ROUND));
        }
    }
    println!("groupchat message into a room of {OCCUPANTS} occupants, median of {ROUNDS} rounds of {MESSAGES_PER_ROUND}");
    println!(
        "{:<32} {:>14} {:>12}",
        "extensions switched on", "µs per message", "vs none"
    );
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2].as_secs_f64() * 1e6
    };
    // The first configuration is the one without extensions, unless another ran alone.
    let baseline = (configurations[0].1 == 0).then(|| median(&mut times[0].clone()));
    for ((name, _), times) in configurations.iter().zip(&mut times) {
        let micros = median(times);
        match baseline {
            Some(baseline) => println!(
                "{name:<32} {micros:>14.1} {:>+11.1}%",
                (micros / baseline - 1.0) * 100.0
            ),
            None => println!("{name:<32} {micros:>14.1}"),
        }
    }
}
