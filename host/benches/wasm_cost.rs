//! What WebAssembly costs: the MUC plugin as a component versus the same library linked natively,
//! through the same host (routing core, transactions, store), from a stanza's bytes in to every
//! recipient's bytes out. Prints figures; asserts nothing about time.
//!
//!     cargo bench -p muc-host --features native-plugin --bench wasm_cost

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::FullJid;
use minidom::Element;
use muc_host::clock::SystemClock;
use muc_host::router::{QueueSink, Router};
use muc_host::runtime::native::NativeRuntime;
use muc_host::runtime::{MucBackend, PluginEngine, PluginRuntime, Settings};
use muc_host::service::Service;
use muc_host::storage::Storage;

const ROOM: &str = "bench@conference.localhost";

struct Bench<M: MucBackend> {
    service: Service<M>,
    users: Vec<(FullJid, QueueSink)>,
}

impl<M: MucBackend> Bench<M> {
    /// A configured room with `occupants` users in it, every queue drained.
    fn new(muc: M, occupants: usize) -> Bench<M> {
        let mut bench = Bench {
            service: Service::new(Router::new("localhost", "conference.localhost"), muc),
            users: Vec::new(),
        };
        for n in 0..occupants {
            let user = bench.connect(&format!("user{n}@localhost/bench"));
            bench.send(&user, &join(n));
            if n == 0 {
                bench.send(&user, &format!("<iq xmlns='jabber:client' type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
            }
        }
        bench.drain();
        bench
    }

    fn connect(&mut self, jid: &str) -> FullJid {
        let jid: FullJid = jid.parse().unwrap();
        let sink = QueueSink::default();
        self.service.connect(jid.clone(), Box::new(sink.clone()));
        self.service.flush().unwrap();
        self.users.push((jid.clone(), sink));
        jid
    }

    /// Bytes in: parsed by the host as a client connection would, then handled.
    fn send(&mut self, from: &FullJid, xml: &str) {
        let stanza: Element = xml.parse().unwrap();
        self.service.from_client(from, stanza);
        self.service.flush().unwrap();
    }

    /// Bytes out: every delivered stanza serialised; returns how many stanzas.
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
}

fn join(n: usize) -> String {
    format!("<presence xmlns='jabber:client' to='{ROOM}/user{n}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>")
}

/// Time per groupchat message into the room, and stanzas delivered per message.
fn message<M: MucBackend>(bench: &mut Bench<M>, iterations: usize) -> (Duration, usize) {
    let sender = bench.users[0].0.clone();
    let mut delivered = 0;
    let started = Instant::now();
    for i in 0..iterations {
        bench.send(&sender, &format!("<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='m{i}'><body>Message number {i}, of an ordinary length for a chat line.</body></message>"));
        delivered = bench.drain();
    }
    (started.elapsed() / iterations as u32, delivered)
}

/// Time per join into the room (the leave that follows each is not counted).
fn joins<M: MucBackend>(bench: &mut Bench<M>, iterations: usize) -> (Duration, usize) {
    let mut spent = Duration::ZERO;
    let mut delivered = 0;
    for i in 0..iterations {
        let n = 1000 + i;
        let joiner = bench.connect(&format!("user{n}@localhost/bench"));
        let started = Instant::now();
        bench.send(&joiner, &join(n));
        delivered = bench.drain();
        spent += started.elapsed();
        bench.service.disconnect(&joiner);
        bench.drain();
        bench.users.pop();
    }
    (spent / iterations as u32, delivered)
}

fn settings() -> Settings {
    Settings {
        service: "conference.localhost".into(),
        ..Settings::default()
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component = root.join("target/wasm32-wasip2/component/muc_plugin.wasm");
    let engine = PluginEngine::new(Some(root.join("target/bench-cache"))).unwrap();
    let compiled = engine
        .compile(&component)
        .expect("the component (bash scripts/build)");
    let wasm = |occupants| {
        let runtime = PluginRuntime::start(
            compiled.clone(),
            Storage::in_memory(),
            None,
            settings(),
            Arc::new(SystemClock),
        )
        .unwrap();
        Bench::new(runtime, occupants)
    };
    let native = |occupants| {
        Bench::new(
            NativeRuntime::new(Storage::in_memory(), settings(), Arc::new(SystemClock)),
            occupants,
        )
    };

    println!(
        "{:<34} {:>12} {:>12} {:>8} {:>10}",
        "scenario", "wasm µs", "native µs", "ratio", "stanzas out"
    );
    let report =
        |name: &str, (wasm, out): (Duration, usize), (native, native_out): (Duration, usize)| {
            assert_eq!(out, native_out, "both deliver the same stanzas");
            let (w, n) = (wasm.as_secs_f64() * 1e6, native.as_secs_f64() * 1e6);
            println!("{name:<34} {w:>12.1} {n:>12.1} {:>7.2}x {out:>10}", w / n);
        };
    for occupants in [10, 100] {
        let iterations = if occupants == 10 { 2000 } else { 300 };
        let (mut w, mut n) = (wasm(occupants), native(occupants));
        message(&mut w, 50);
        message(&mut n, 50);
        report(
            &format!("groupchat message, {occupants} occupants"),
            message(&mut w, iterations),
            message(&mut n, iterations),
        );
    }
    let (mut w, mut n) = (wasm(10), native(10));
    joins(&mut w, 20);
    joins(&mut n, 20);
    report("join, 10 occupants", joins(&mut w, 500), joins(&mut n, 500));
}
