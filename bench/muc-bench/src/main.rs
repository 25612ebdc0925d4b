//! `muc-bench`: logs N clients in over c2s, joins them to rooms, has S of each room's occupants
//! send M groupchat messages (at a fixed offered rate, or as fast as the server takes them, a
//! window of unanswered messages per sender), and reports deliveries/s, send-to-receive latency,
//! the time to fill the rooms, and the server's CPU seconds per million deliveries and resident
//! memory (from /proc, summed over `--pid`s). With `--flood N`, one more client floods a room of
//! its own meanwhile. Figures only: it asserts nothing about speed.

mod client;
mod flood;
mod procstat;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use minidom::rxml::xml_ncname;
use minidom::Element;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, Semaphore};

use client::Client;

#[derive(Parser, Clone, Debug)]
#[command(about = "Load tool for XEP-0045 services over c2s")]
struct Options {
    /// The server's c2s address.
    #[arg(long, default_value = "127.0.0.1:5222")]
    server: String,
    /// The XMPP domain of the accounts.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// The MUC service.
    #[arg(long, default_value = "conference.localhost")]
    muc: String,
    /// Accounts are PREFIX0, PREFIX1... (created beforehand, or any password accepted).
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    #[arg(long, default_value = "bench")]
    password: String,
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Occupants per room.
    #[arg(long, default_value_t = 10)]
    occupants: usize,
    /// Senders per room (the first occupants).
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Offered rate, messages per second over all senders; 0: as fast as the server takes them.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// With --rate 0: messages a sender may have sent and not yet seen reflected.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Logins and joins under way at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Give up on the run after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Server processes to measure (repeatable).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// A name for the run, in the report.
    #[arg(long, default_value = "run")]
    label: String,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Room names are PREFIXn.
    #[arg(long, default_value = "bench")]
    room_prefix: String,
    /// A field of the configuration form each room is created with, as VAR=VALUE (repeatable;
    /// VALUE may list several values separated by commas), e.g.
    /// `muc#roomconfig_persistentroom=1` or `muc#roomconfig_presencebroadcast=moderator`.
    #[arg(long = "room-config", value_parser = parse_field)]
    room_config: Vec<(String, Vec<String>)>,
    /// The rooms exist already (persistent rooms in the server's store): everyone joins, nobody
    /// creates.
    #[arg(long)]
    existing_rooms: bool,
    /// One more client pipelines this many groupchat messages into a room of its own, as fast as
    /// its socket takes them, while the measured rooms run: what one flooding user costs the
    /// others (their latency), and what became of the flood (reflected, refused).
    #[arg(long, default_value_t = 0)]
    flood: usize,
}

fn parse_field(field: &str) -> Result<(String, Vec<String>), String> {
    let (var, values) = field
        .split_once('=')
        .ok_or_else(|| format!("'{field}' is not VAR=VALUE"))?;
    Ok((
        var.to_string(),
        values.split(',').map(str::to_string).collect(),
    ))
}

/// What every client's reader shares.
struct Tally {
    started: Instant,
    /// When the messages began, µs after `started`: stamps from before (history from an earlier
    /// run, in an existing room) are not this run's.
    messages_began: AtomicU64,
    delivered: AtomicU64,
    expected: AtomicU64,
    done: Notify,
}

impl Tally {
    fn delivered(&self, count: u64) {
        let now = self.delivered.fetch_add(count, Ordering::Relaxed) + count;
        let expected = self.expected.load(Ordering::Relaxed);
        if expected > 0 && now >= expected {
            self.done.notify_waiters();
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = Options::parse();
    if options.senders > options.occupants || options.occupants == 0 {
        bail!("--senders must be at most --occupants, and --occupants at least 1");
    }
    let report = tokio::time::timeout(Duration::from_secs(options.timeout), run(&options))
        .await
        .context("the run took longer than --timeout")??;
    if options.json {
        println!("{}", report);
    } else {
        for (key, value) in report.as_object().expect("an object") {
            println!("{key:<28} {value}");
        }
    }
    Ok(())
}

async fn run(options: &Options) -> Result<serde_json::Value> {
    let options = Arc::new(options.clone());
    let idle = procstat::usage(&options.pids)?;
    // Log everyone in.
    let total = options.rooms * options.occupants;
    let gate = Arc::new(Semaphore::new(options.concurrency));
    let mut logins = Vec::with_capacity(total);
    for n in 0..total {
        let (options, gate) = (options.clone(), gate.clone());
        logins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let user = format!("{}{n}", options.user_prefix);
            Client::login(&options.server, &options.domain, &user, &options.password).await
        }));
    }
    let mut clients = Vec::with_capacity(total);
    for login in logins {
        clients.push(login.await??);
    }
    // Fill the rooms: each room's first occupant creates it (an instant room), then the others
    // join, `concurrency` at a time. Each client reads its stream from the moment it is in, as a
    // real client does: the presences of later joiners do not pile up unread.
    let tally = Arc::new(Tally {
        started: Instant::now(),
        messages_began: AtomicU64::new(u64::MAX),
        delivered: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        done: Notify::new(),
    });
    let join_started = Instant::now();
    let mut rooms: Vec<Vec<Client>> = Vec::new();
    let mut clients = clients.into_iter();
    let mut members: Vec<Vec<Option<Member>>> = Vec::new();
    for r in 0..options.rooms {
        rooms.push(clients.by_ref().take(options.occupants).collect());
        let room = format!("{}{r}@{}", options.room_prefix, options.muc);
        if options.existing_rooms {
            join(&mut rooms[r][0], &room, 0).await?;
        } else {
            create(&mut rooms[r][0], &room, &options.room_config).await?;
        }
        members.push((0..options.occupants).map(|_| None).collect());
    }
    let mut joins = Vec::new();
    for (r, clients) in rooms.into_iter().enumerate() {
        let room = format!("{}{r}@{}", options.room_prefix, options.muc);
        for (i, mut client) in clients.into_iter().enumerate() {
            let (gate, room, tally) = (gate.clone(), room.clone(), tally.clone());
            let window = options.window;
            joins.push(tokio::spawn(async move {
                if i > 0 {
                    let _permit = gate.acquire().await?;
                    join(&mut client, &room, i).await?;
                }
                let member = Member::listen(client, format!("{room}/u{i}"), tally, window);
                Ok::<_, anyhow::Error>((r, i, member))
            }));
        }
    }
    for joined in joins {
        let (r, i, member) = joined.await??;
        members[r][i] = Some(member);
    }
    let join_seconds = join_started.elapsed().as_secs_f64();
    let flooder = if options.flood > 0 {
        let user = format!("{}flood", options.user_prefix);
        let mut client =
            Client::login(&options.server, &options.domain, &user, &options.password).await?;
        let room = format!("{}flood@{}", options.room_prefix, options.muc);
        create(&mut client, &room, &[]).await?;
        Some(flood::Flooder::new(client, room))
    } else {
        None
    };
    let before = procstat::usage(&options.pids)?;

    // The messages: every one reaches every occupant of its room, its sender included.
    let expected = (options.rooms * options.senders * options.messages * options.occupants) as u64;
    tally.expected.store(expected, Ordering::Relaxed);
    let messages_started = Instant::now();
    tally.messages_began.store(
        tally.started.elapsed().as_micros() as u64,
        Ordering::Relaxed,
    );
    let flood = flooder.map(|flooder| flooder.start(options.flood));
    let per_sender_interval = (options.rate > 0.0)
        .then(|| Duration::from_secs_f64((options.rooms * options.senders) as f64 / options.rate));
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for (r, members) in members.into_iter().enumerate() {
        let room = format!("{}{r}@{}", options.room_prefix, options.muc);
        for (i, member) in members.into_iter().enumerate() {
            let Member {
                writer,
                reflected,
                latencies,
                reader,
            } = member.expect("every occupant joined");
            readers.push((latencies, reader));
            if i < options.senders {
                let (options, tally, room) = (options.clone(), tally.clone(), room.clone());
                senders.push(tokio::spawn(async move {
                    send_all(
                        writer,
                        &room,
                        &options,
                        &tally,
                        reflected,
                        per_sender_interval,
                    )
                    .await
                }));
            } else {
                // Kept open, so that the server does not see the occupant leave.
                senders.push(tokio::spawn(async move {
                    let _keep = writer;
                    std::future::pending::<Result<()>>().await
                }));
            }
        }
    }
    let done = tally.done.notified();
    if tally.delivered.load(Ordering::Relaxed) < expected {
        done.await;
    }
    let elapsed = messages_started.elapsed().as_secs_f64();
    let after = procstat::usage(&options.pids)?;
    let flood = flood.map(flood::Flood::stop).transpose()?;
    for task in &senders {
        task.abort();
    }
    let mut latencies: Vec<u64> = Vec::new();
    for (mine, reader) in readers {
        reader.abort();
        latencies.extend(mine.lock().expect("latencies").iter());
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |micros| *micros as f64 / 1000.0)
    };
    let delivered = tally.delivered.load(Ordering::Relaxed);
    let cpu = after.cpu_seconds - before.cpu_seconds;
    let mut report = serde_json::json!({
        "label": options.label,
        "rooms": options.rooms,
        "occupants": options.occupants,
        "senders": options.senders,
        "messages": options.messages,
        "delivered": delivered,
        "seconds": round(elapsed),
        "deliveries_per_second": round(delivered as f64 / elapsed),
        "latency_p50_ms": round(percentile(0.50)),
        "latency_p99_ms": round(percentile(0.99)),
        "latency_max_ms": round(percentile(1.0)),
        "join_seconds": round(join_seconds),
        "server_cpu_seconds": round(cpu),
        "server_cpu_seconds_per_million": if options.pids.is_empty() { serde_json::Value::Null } else { round(cpu / delivered.max(1) as f64 * 1e6).into() },
        "server_cpu_seconds_joins": round(before.cpu_seconds - idle.cpu_seconds),
        "server_resident_mib": round(mib(after.resident_bytes)),
        "server_resident_mib_before_logins": round(mib(idle.resident_bytes)),
        "server_resident_mib_joined": round(mib(before.resident_bytes)),
    });
    if let (Some(report), Some(serde_json::Value::Object(flood))) = (report.as_object_mut(), flood)
    {
        report.extend(flood);
    }
    Ok(report)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The send time (µs since the run's start) a benchmark message carries in its body.
fn bench_stamp(stanza: &Element) -> Option<u64> {
    if stanza.name() != "message" || stanza.attr("type") != Some("groupchat") {
        return None;
    }
    let body = stanza.get_child("body", "jabber:client")?.text();
    body.strip_prefix("bench ")?.split(' ').next()?.parse().ok()
}

/// Creates `room` with its first occupant, u0: an instant room (XEP-0045 §10.1.2), or one
/// configured with `fields` (§10.1.3).
async fn create(client: &mut Client, room: &str, fields: &[(String, Vec<String>)]) -> Result<()> {
    join(client, room, 0).await?;
    const DATA: &str = "jabber:x:data";
    let mut form = Element::builder("x", DATA).attr(xml_ncname!("type").into(), "submit");
    if !fields.is_empty() {
        let form_type = (
            "FORM_TYPE".to_string(),
            vec!["http://jabber.org/protocol/muc#roomconfig".to_string()],
        );
        for (var, values) in std::iter::once(&form_type).chain(fields) {
            form = form.append(
                Element::builder("field", DATA)
                    .attr(xml_ncname!("var").into(), var.as_str())
                    .append_all(
                        values
                            .iter()
                            .map(|value| Element::builder("value", DATA).append(value.as_str())),
                    ),
            );
        }
    }
    let iq = Element::builder("iq", "jabber:client")
        .attr(xml_ncname!("type").into(), "set")
        .attr(xml_ncname!("id").into(), "create")
        .attr(xml_ncname!("to").into(), room)
        .append(Element::builder("query", "http://jabber.org/protocol/muc#owner").append(form))
        .build();
    client.send(&String::from(&iq)).await?;
    let answer = client
        .wait_for(|e| e.name() == "iq" && e.attr("id") == Some("create"))
        .await?;
    if answer.attr("type") != Some("result") {
        bail!("creating {room}: {}", String::from(&answer));
    }
    Ok(())
}

/// An occupant of a room: its reader runs from the moment it joined, timing the benchmark
/// messages it receives and counting them in the tally.
struct Member {
    writer: OwnedWriteHalf,
    /// Permits to send: a sender's own messages, reflected, give them back.
    reflected: Arc<Semaphore>,
    /// Send-to-receive, µs; the reader's own, readable once it is stopped.
    latencies: Arc<std::sync::Mutex<Vec<u64>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Member {
    /// Starts reading `client`'s stream; `own` is its occupant JID (`room/nick`).
    fn listen(client: Client, own: String, tally: Arc<Tally>, window: usize) -> Member {
        let Client { mut reader, writer } = client;
        let reflected = Arc::new(Semaphore::new(window));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        let (mine, reflected_by_reader) = (latencies.clone(), reflected.clone());
        let reader = tokio::spawn(async move {
            while let Ok(stanza) = reader.element().await {
                let Some(sent_at) = bench_stamp(&stanza)
                    .filter(|&sent_at| sent_at >= tally.messages_began.load(Ordering::Relaxed))
                else {
                    continue;
                };
                let now = tally.started.elapsed().as_micros() as u64;
                mine.lock()
                    .expect("latencies")
                    .push(now.saturating_sub(sent_at));
                if stanza.attr("from") == Some(own.as_str()) {
                    reflected_by_reader.add_permits(1);
                }
                tally.delivered(1);
            }
        });
        Member {
            writer,
            reflected,
            latencies,
            reader,
        }
    }
}

/// Joins `room` as `u{index}`, without history, and waits for the own presence (110).
async fn join(client: &mut Client, room: &str, index: usize) -> Result<()> {
    client
        .send(&format!("<presence to='{room}/u{index}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"))
        .await?;
    client
        .wait_for(|e| {
            e.name() == "presence"
                && e.get_child("x", "http://jabber.org/protocol/muc#user")
                    .is_some_and(|x| x.children().any(|c| c.attr("code") == Some("110")))
        })
        .await
        .with_context(|| format!("joining {room}"))?;
    Ok(())
}

/// Sends this sender's messages: paced at the offered rate, or within its window.
async fn send_all(
    mut writer: OwnedWriteHalf,
    room: &str,
    options: &Options,
    tally: &Tally,
    reflected: Arc<Semaphore>,
    interval: Option<Duration>,
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut ticker = interval.map(|every| {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        ticker
    });
    for n in 0..options.messages {
        match &mut ticker {
            Some(ticker) => {
                ticker.tick().await;
            }
            None => reflected.acquire().await?.forget(),
        }
        let stamp = tally.started.elapsed().as_micros();
        let message = format!("<message type='groupchat' to='{room}'><body>bench {stamp} {n} an ordinary chat line of a usual length</body></message>");
        writer.write_all(message.as_bytes()).await?;
    }
    std::future::pending::<()>().await;
    Ok(())
}
