//! The storage half of `bench/archive`: one room's archive of 1,000,000 messages in the host's
//! SQLite store, filled through the storage API, then queried as MAM does. Prints p50/p99 of the
//! newest page of 50, a page after an id anywhere in the archive, a page from a start time, the
//! newest page from one sender and the metadata query (oldest and newest entry); the rate of paging the whole archive forward;
//! the time to open the store and read the first page of that room against a room of 10; and
//! what destroying that room's archive costs: the call, then the passes that collect it.
//! Prints figures; asserts nothing.
//!
//!     cargo bench -p muc-host --bench archive_store --profile release [-- --smoke]
//!
//! `--smoke` fills 20,000 messages and runs fewer queries, for CI.

use std::path::Path;
use std::time::{Duration, Instant};

use muc_host::storage::{
    ArchiveEntry, ArchiveFilter, ArchivePosition, ArchiveQuery, Quota, Storage, StoreLocation,
    Transaction,
};

const BIG: &str = "big@conference.localhost";
const SMALL: &str = "small@conference.localhost";
/// Messages appended per transaction while filling.
const FILL_CHUNK: u64 = 50_000;
/// The first message's time; one message a second after it.
const START_MS: u64 = 1_700_000_000_000;
const PAGE: u32 = 50;
/// The page MAM clients get when paging a whole archive (the plugin's cap).
const PAGING_PAGE: u32 = 250;

struct Sizes {
    messages: u64,
    queries: usize,
    opens: usize,
}

fn main() {
    let smoke = std::env::args().any(|arg| arg == "--smoke");
    let sizes = if smoke {
        Sizes {
            messages: 20_000,
            queries: 200,
            opens: 3,
        }
    } else {
        Sizes {
            messages: 1_000_000,
            queries: 2_000,
            opens: 7,
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    fill(dir.path(), &sizes);
    let storage = Storage::open(&StoreLocation::Sqlite(dir.path().into())).expect("the store");
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let messages = sizes.messages;
    let newest = ArchiveQuery {
        filter: ArchiveFilter::default(),
        position: ArchivePosition::Newest,
        limit: PAGE,
    };
    report(
        "newest page of 50",
        latencies(sizes.queries, || page(&storage, BIG, &newest)),
    );
    report(
        "page of 50 after an id",
        latencies(sizes.queries, || {
            let query = ArchiveQuery {
                filter: ArchiveFilter::default(),
                position: ArchivePosition::After(id(random.below(messages))),
                limit: PAGE,
            };
            page(&storage, BIG, &query)
        }),
    );
    report(
        "page of 50 from a start time",
        latencies(sizes.queries, || {
            let query = ArchiveQuery {
                filter: ArchiveFilter {
                    start_ms: Some(START_MS + random.below(messages) * 1000),
                    ..ArchiveFilter::default()
                },
                position: ArchivePosition::Oldest,
                limit: PAGE,
            };
            page(&storage, BIG, &query)
        }),
    );
    report(
        "newest page of 50 from one sender (a tenth of the archive, counted)",
        latencies(sizes.queries, || {
            let query = ArchiveQuery {
                filter: ArchiveFilter {
                    with: Some(format!("{BIG}/user{}", random.below(10))),
                    ..ArchiveFilter::default()
                },
                position: ArchivePosition::Newest,
                limit: PAGE,
            };
            page(&storage, BIG, &query)
        }),
    );
    report(
        "metadata (oldest and newest)",
        latencies(sizes.queries, || {
            for position in [ArchivePosition::Oldest, ArchivePosition::Newest] {
                let query = ArchiveQuery {
                    filter: ArchiveFilter::default(),
                    position,
                    limit: 1,
                };
                page(&storage, BIG, &query);
            }
        }),
    );
    page_everything(&storage, messages);
    drop(storage);
    for room in [BIG, SMALL] {
        let times: Vec<Duration> = (0..sizes.opens)
            .map(|_| {
                let started = Instant::now();
                let storage =
                    Storage::open(&StoreLocation::Sqlite(dir.path().into())).expect("the store");
                page(&storage, room, &newest);
                started.elapsed()
            })
            .collect();
        let median = sorted(times)[sizes.opens / 2];
        println!(
            "open the store and read the newest page of {room}: {:.2} ms (median of {})",
            ms(median),
            sizes.opens
        );
    }
    delete_and_collect(dir.path(), messages);
    println!("resident memory at the end: {} KiB", resident_kib());
}

/// Destroys BIG's archive in one call, then collects its entries between calls as the core does,
/// timing each pass.
fn delete_and_collect(dir: &Path, messages: u64) {
    let mut storage = Storage::open(&StoreLocation::Sqlite(dir.into())).expect("the store");
    let started = Instant::now();
    let mut txn = Transaction::new(Quota::default());
    txn.archive_delete(&mut storage, BIG);
    storage.apply(txn.writes).expect("a commit");
    println!(
        "delete the archive of {messages} messages, in the call: {:.2} ms",
        ms(started.elapsed())
    );
    let mut passes = Vec::new();
    loop {
        let started = Instant::now();
        let deleted = storage.expire_archive(START_MS).expect("a pass");
        passes.push(started.elapsed());
        if deleted == 0 {
            break;
        }
    }
    let total: Duration = passes.iter().sum();
    let count = passes.len();
    report_as(
        &format!(
            "then collected between calls in {count} passes ({:.1} s in all); a pass",
            total.as_secs_f64()
        ),
        "passes",
        passes,
    );
}

/// Fills BIG with `sizes.messages` messages from 10 senders and SMALL with 10.
fn fill(dir: &Path, sizes: &Sizes) {
    let mut storage = Storage::open(&StoreLocation::Sqlite(dir.into())).expect("the store");
    let quota = Quota {
        max_call_bytes: usize::MAX,
        ..Quota::default()
    };
    let started = Instant::now();
    let mut n = 0;
    while n < sizes.messages {
        let mut txn = Transaction::new(quota);
        for n in n..(n + FILL_CHUNK).min(sizes.messages) {
            txn.archive_append(&mut storage, BIG, &message(n))
                .expect("an append");
        }
        assert!(txn.archive_failure.is_none(), "{:?}", txn.archive_failure);
        storage.apply(txn.writes).expect("a commit");
        n += FILL_CHUNK;
    }
    let elapsed = started.elapsed();
    println!(
        "filled {} messages in {:.1} s ({:.0} messages/s)",
        sizes.messages,
        elapsed.as_secs_f64(),
        sizes.messages as f64 / elapsed.as_secs_f64()
    );
    let mut txn = Transaction::new(quota);
    for n in 0..10 {
        txn.archive_append(&mut storage, SMALL, &message(n))
            .expect("an append");
    }
    storage.apply(txn.writes).expect("a commit");
    let bytes = std::fs::metadata(dir.join("muc.sqlite3")).map_or(0, |file| file.len());
    println!("database file: {} MiB", bytes >> 20);
}

fn id(n: u64) -> String {
    format!("m{n:016x}")
}

/// A groupchat message as the room broadcasts it, about 400 bytes.
fn message(n: u64) -> ArchiveEntry {
    let nick = format!("user{}", n % 10);
    ArchiveEntry {
        id: id(n),
        at_ms: START_MS + n * 1000,
        sender: format!("{BIG}/{nick}"),
        occupant_id: Some(format!("occupant-{nick}")),
        real_jid: Some(format!("{nick}@localhost/desktop")),
        stanza: format!(
            "<message xmlns='jabber:client' from='{BIG}/{nick}' type='groupchat' id='c{n}'>\
             <body>Message number {n}: the quick brown fox jumps over the lazy dog, again \
             and again, until the archive holds a million of them.</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='{}' by='{BIG}'/>\
             <occupant-id xmlns='urn:xmpp:occupant-id:0' id='occupant-{nick}'/></message>",
            id(n)
        ),
    }
}

fn page(storage: &Storage, room: &str, query: &ArchiveQuery) {
    let page = storage
        .archive_query(room, query)
        .unwrap_or_else(|failure| panic!("query failed: {failure:?}"));
    std::hint::black_box(page);
}

/// Pages BIG from the oldest entry to the newest, as a client catching up does.
fn page_everything(storage: &Storage, messages: u64) {
    let started = Instant::now();
    let mut position = ArchivePosition::Oldest;
    let mut seen = 0;
    loop {
        let query = ArchiveQuery {
            filter: ArchiveFilter::default(),
            position,
            limit: PAGING_PAGE,
        };
        let page = storage.archive_query(BIG, &query).expect("a page");
        seen += page.entries.len() as u64;
        match page.entries.last() {
            Some(last) if !page.complete => position = ArchivePosition::After(last.id.clone()),
            _ => break,
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(seen, messages, "every message paged once");
    println!(
        "paging the whole archive forward, {PAGING_PAGE} a page: {:.0} messages/s ({:.1} s)",
        seen as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

fn latencies(count: usize, mut run: impl FnMut()) -> Vec<Duration> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .collect()
}

fn report(what: &str, times: Vec<Duration>) {
    report_as(what, "queries", times)
}

fn report_as(what: &str, unit: &str, times: Vec<Duration>) {
    let times = sorted(times);
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction).round() as usize];
    println!(
        "{what}: p50 {:.3} ms, p99 {:.3} ms ({} {unit})",
        ms(at(0.5)),
        ms(at(0.99)),
        times.len()
    );
}

fn sorted(mut times: Vec<Duration>) -> Vec<Duration> {
    times.sort();
    times
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// xorshift64: positions spread over the archive, the same every run.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}
