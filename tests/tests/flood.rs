//! One user must not stall the others (issue 16, point 5): the core takes connections' stanzas in
//! turn, so a second client's message overtakes a flooder's backlog; a sender over the message
//! rate in a room is refused with `resource-constraint` and passes again once it refilled; a
//! connection over its byte rate is read slower, not dropped. Asserted by order and counts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use minidom::Element;
use muc_host::message_rate::MessageRateLimit;
use muc_host::scansion::Harness;
use muc_host::testhost::TestHost;
use muc_tests::{compile, Server};

const MUC: &str = "conference.localhost";
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// A raw client connection, logged in.
struct Raw {
    socket: TcpStream,
    /// Read and not yet consumed.
    text: String,
}

impl Raw {
    fn logged_in(server: &Server, user: &str) -> Raw {
        let socket = TcpStream::connect(server.c2s).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut raw = Raw {
            socket,
            text: String::new(),
        };
        raw.send(HEADER);
        raw.read_past("</stream:features>");
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"));
        raw.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
        ));
        raw.read_past("<success");
        raw.send(HEADER);
        raw.read_past("</stream:features>");
        raw.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
        raw.read_past("</iq>");
        raw
    }

    fn send(&mut self, text: &str) {
        self.socket.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until `needle` has arrived, and drops everything up to and including it.
    fn read_past(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buffer = [0u8; 65536];
        while !self.text.contains(needle) {
            assert!(
                Instant::now() < deadline,
                "expected {needle:?}, got {:?}",
                self.text
            );
            match self.socket.read(&mut buffer) {
                Ok(0) => panic!("the server closed the stream: {:?}", self.text),
                Ok(read) => self
                    .text
                    .push_str(&String::from_utf8_lossy(&buffer[..read])),
                Err(_) => continue,
            }
        }
        let end = self.text.find(needle).unwrap() + needle.len();
        self.text.drain(..end).collect()
    }

    /// Joins (or creates, as an instant room) `room` as `nick`.
    fn enter(&mut self, room: &str, nick: &str) {
        self.send(&format!(
            "<presence to='{room}@{MUC}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ));
        self.read_past("code='110'");
        self.send(&format!("<iq type='set' id='create-{room}' to='{room}@{MUC}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
        self.read_past(&format!("id='create-{room}'"));
    }
}

/// The messages with a body in `text` (a stretch of a stream), in order: the room (or user) each
/// came from, and its body.
fn bodies(text: &str) -> Vec<(String, String)> {
    let between = |text: &str, start: &str, end: &str| -> Option<String> {
        let from = text.find(start)? + start.len();
        Some(text[from..][..text[from..].find(end)?].to_string())
    };
    text.split("<message ")
        .skip(1)
        .filter_map(|message| {
            let from = between(message, "from='", "'")?;
            let body = between(message, "<body>", "</body>")?;
            Some((from.split('@').next()?.to_string(), body))
        })
        .collect()
}

#[test]
fn a_second_clients_message_overtakes_a_flooders_backlog() {
    const FLOOD: usize = 4000;
    let server = Server::start(&[
        "--insecure-auth",
        "--client-bytes-per-second",
        "0",
        "--room-messages-per-second",
        "0",
    ]);
    let mut flooder = Raw::logged_in(&server, "flooder");
    flooder.enter("flood", "f");
    // The other client sits in the flood's room too: its stream shows, in the core's order,
    // the flood's messages and its own message in its own room.
    let mut other = Raw::logged_in(&server, "other");
    other.enter("quiet", "o");
    other.send(&format!(
        "<presence to='flood@{MUC}/o'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    other.read_past("code='110'");

    // The flood, pipelined in one write, none of it read back meanwhile.
    let flood: String = (0..FLOOD)
        .map(|n| {
            format!("<message type='groupchat' to='flood@{MUC}'><body>flood {n}</body></message>")
        })
        .collect();
    let mut writer = flooder.socket.try_clone().unwrap();
    let writing = std::thread::spawn(move || writer.write_all(flood.as_bytes()).unwrap());

    // A quarter into the flood (by then the server has read it all, were it free to: reading is
    // far faster than handling), the other client speaks in its own room...
    let before = other.read_past("<body>flood 1000</body>");
    other.send(&format!(
        "<message type='groupchat' to='quiet@{MUC}'><body>overtaking</body></message>"
    ));
    // ...and reads until the flood's last message.
    let after = other.read_past(&format!("<body>flood {}</body>", FLOOD - 1));
    writing.join().unwrap();
    let seen = bodies(&format!("{before}{after}"));
    let flood_seen: Vec<&str> = seen
        .iter()
        .filter(|(room, _)| room == "flood")
        .map(|(_, body)| body.as_str())
        .collect();
    assert_eq!(flood_seen.len(), FLOOD, "every flood message, once");
    assert!(
        flood_seen
            .iter()
            .enumerate()
            .all(|(n, body)| *body == format!("flood {n}")),
        "the flood in its own order"
    );
    let own = seen
        .iter()
        .position(|(room, body)| room == "quiet" && body == "overtaking")
        .expect("the other client's message is reflected before the flood's end");
    let flood_after_own = seen[own..]
        .iter()
        .filter(|(room, _)| room == "flood")
        .count();
    assert!(
        flood_after_own > 0,
        "the other client's message waited for the whole flood"
    );
    // The flooder's stream is intact: its backlog arrives whole, in order.
    let mine = flooder.read_past(&format!("<body>flood {}</body>", FLOOD - 1));
    let reflected = bodies(&mine)
        .into_iter()
        .filter(|(room, _)| room == "flood")
        .count();
    assert_eq!(reflected, FLOOD);
}

#[test]
fn a_connection_over_its_byte_rate_is_read_slower_and_kept() {
    const RATE: usize = 8_000;
    let server = Server::start(&[
        "--insecure-auth",
        "--client-bytes-per-second",
        &RATE.to_string(),
        "--client-burst-bytes",
        &RATE.to_string(),
    ]);
    let mut client = Raw::logged_in(&server, "chatty");
    // Messages to itself (the server routes them back): 40 KiB in one write.
    let padding = "x".repeat(400);
    let burst: String = (0..100)
        .map(|n| {
            format!(
                "<message to='chatty@localhost/r' type='chat'><body>{n} {padding}</body></message>"
            )
        })
        .collect();
    assert!(burst.len() > 5 * RATE);
    let started = Instant::now();
    let mut writer = client.socket.try_clone().unwrap();
    let writing = std::thread::spawn(move || writer.write_all(burst.as_bytes()).unwrap());
    let received = client.read_past(&format!("<body>99 {padding}</body>"));
    let elapsed = started.elapsed();
    writing.join().unwrap();
    let numbers: Vec<usize> = bodies(&received)
        .iter()
        .map(|(_, body)| body.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers, (0..100).collect::<Vec<_>>(), "all of it, in order");
    // Reads take at most 16 KiB at a time, the debt of each paid before the next: what came
    // after the burst and the last read waited for the rate. A lower bound, whatever the machine.
    let waited = (100 * (padding.len() + 80) - RATE - 16 * 1024) / RATE;
    assert!(
        elapsed >= Duration::from_secs(waited as u64),
        "read in {elapsed:?}: not slowed to {RATE} bytes/s"
    );
    // Still connected: the server answers a ping.
    client
        .send("<iq type='get' id='still-there' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    client.read_past("id='still-there'");
}

/// In-process with a virtual clock: the burst, the refusal, the refill, each sender and room on
/// its own, and the component path as the client path.
#[test]
fn an_occupant_over_the_message_rate_is_refused_until_it_refills() {
    let mut host = TestHost::new(compile("muc_plugin")).unwrap();
    host.service().limit_message_rate(Some(MessageRateLimit {
        per_second: 1.0,
        burst: 3,
    }));
    let stanza = |xml: String| -> Element { xml.parse().unwrap() };
    let drain = |host: &mut TestHost, client: &str| -> Vec<Element> {
        std::iter::from_fn(|| host.next_stanza(client, Duration::ZERO)).collect()
    };
    for (client, nick) in [("alice", "Alice"), ("bob", "Bob")] {
        host.connect(client, &format!("{client}@localhost/r"), "")
            .unwrap();
        host.send(
            client,
            stanza(format!(
                "<presence xmlns='jabber:client' to='room@{MUC}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
            )),
        )
        .unwrap();
        if client == "alice" {
            // An instant room (XEP-0045 §10.1.2), so that bob may come in.
            host.send(
                client,
                stanza(format!(
                    "<iq xmlns='jabber:client' type='set' id='create' to='room@{MUC}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
                )),
            )
            .unwrap();
        }
    }
    drain(&mut host, "alice");
    drain(&mut host, "bob");
    let say = |host: &mut TestHost, client: &str, n: usize| {
        host.send(
            client,
            stanza(format!(
                "<message xmlns='jabber:client' to='room@{MUC}' type='groupchat' id='{client}{n}'><body>{n}</body></message>"
            )),
        )
        .unwrap();
    };
    // What alice gets back for each: her reflection, or an error.
    let outcome = |host: &mut TestHost| -> Vec<String> {
        drain(host, "alice")
            .iter()
            .filter(|stanza| stanza.attr("id").is_some_and(|id| id.starts_with("alice")))
            .map(|stanza| match stanza.attr("type") {
                Some("error") => {
                    let error = stanza.get_child("error", "jabber:client").unwrap();
                    assert_eq!(error.attr("type"), Some("wait"));
                    assert!(error
                        .get_child("text", "urn:ietf:params:xml:ns:xmpp-stanzas")
                        .is_some_and(|text| text.text().contains("too many messages")));
                    let condition = error.children().next().unwrap().name().to_string();
                    format!("{} {condition}", stanza.attr("id").unwrap())
                }
                _ => format!("{} reflected", stanza.attr("id").unwrap()),
            })
            .collect()
    };
    for n in 0..5 {
        say(&mut host, "alice", n);
    }
    assert_eq!(
        outcome(&mut host),
        [
            "alice0 reflected",
            "alice1 reflected",
            "alice2 reflected",
            "alice3 resource-constraint",
            "alice4 resource-constraint"
        ]
    );
    let bob_saw: Vec<String> = drain(&mut host, "bob")
        .iter()
        .filter_map(|stanza| stanza.get_child("body", "jabber:client").map(Element::text))
        .collect();
    assert_eq!(
        bob_saw,
        ["0", "1", "2"],
        "the refused messages reached nobody"
    );
    say(&mut host, "bob", 0);
    assert_eq!(
        drain(&mut host, "bob")
            .iter()
            .filter(|stanza| stanza.attr("type") == Some("groupchat"))
            .count(),
        1,
        "another sender has a bucket of its own"
    );
    // A private message to an occupant counts against the same room.
    host.send(
        "alice",
        stanza(format!("<message xmlns='jabber:client' to='room@{MUC}/Bob' type='chat' id='alice-pm'><body>psst</body></message>")),
    )
    .unwrap();
    assert_eq!(outcome(&mut host), ["alice-pm resource-constraint"]);

    // A second later one message's worth is back, and only one.
    host.wait(Duration::from_millis(1000)).unwrap();
    drain(&mut host, "alice");
    say(&mut host, "alice", 5);
    say(&mut host, "alice", 6);
    assert_eq!(
        outcome(&mut host),
        ["alice5 reflected", "alice6 resource-constraint"]
    );

    // In component mode the same stanza arrives from the server in front: the same limit.
    host.service().from_component(stanza(format!(
        "<message xmlns='jabber:client' from='alice@localhost/r' to='room@{MUC}' type='groupchat' id='alice7'><body>7</body></message>"
    )));
    host.service().flush().unwrap();
    assert_eq!(outcome(&mut host), ["alice7 resource-constraint"]);
}
