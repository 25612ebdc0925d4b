//! Stream management (XEP-0198) against a running `muc-host serve`, on TCP and on WebSocket:
//! a client in a room enables resumption, its connection drops without a close, and a new
//! stream resumes it: exactly what it had not acknowledged is sent again, in order, and the room
//! saw nothing. Bad resumptions (an unknown id, another account's id, an `h` too high) get the
//! XEP's errors and leave the session as it was; a session not resumed in time leaves its room
//! with one unavailable presence.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use minidom::Element;
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_host::xmpp::stream::{StreamEvent, StreamParser};
use muc_tests::Server;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

const ROOM: &str = "lounge@conference.localhost";
const SM: &str = "urn:xmpp:sm:3";
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
const OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp,
    WebSocket,
}

fn start(resumption_timeout: &str) -> Server {
    Server::start(&[
        "--insecure-auth",
        "--resumption-timeout",
        resumption_timeout,
        "--http",
        "127.0.0.1:0",
    ])
}

enum Link {
    Tcp {
        socket: TcpStream,
        parser: StreamParser,
    },
    WebSocket(WebSocket<TcpStream>),
}

/// A client stream, read one top-level element at a time, counting the stanzas it was sent as
/// a stream-management client does.
struct Client {
    link: Link,
    read: VecDeque<Element>,
    /// Stanzas received since `<enabled/>` or `<resumed/>` (set then).
    handled: Option<u32>,
    closed: bool,
}

impl Client {
    fn connect(server: &Server, kind: Kind) -> Client {
        let link = match kind {
            Kind::Tcp => Link::Tcp {
                socket: TcpStream::connect(server.c2s).unwrap(),
                parser: StreamParser::new(1 << 20),
            },
            Kind::WebSocket => {
                let address = server.http.expect("started with --http");
                let mut request = format!("ws://{address}/xmpp-websocket")
                    .into_client_request()
                    .unwrap();
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
                let stream = TcpStream::connect(address).unwrap();
                let (socket, _) = tungstenite::client::client(request, stream)
                    .map_err(|_| "WebSocket handshake")
                    .unwrap();
                Link::WebSocket(socket)
            }
        };
        let socket = match &link {
            Link::Tcp { socket, .. } => socket,
            Link::WebSocket(socket) => socket.get_ref(),
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Client {
            link,
            read: VecDeque::new(),
            handled: None,
            closed: false,
        }
    }

    /// Authenticated as `user` (any password: insecure auth), the stream restarted; returns the
    /// features offered then.
    fn logged_in(server: &Server, kind: Kind, user: &str) -> (Client, Element) {
        let mut client = Client::connect(server, kind);
        client.open();
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"));
        client.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
        ));
        let success = client.next().expect("an answer to <auth/>");
        assert_eq!(success.name(), "success", "{}", String::from(&success));
        let features = client.open();
        (client, features)
    }

    /// Bound to `user@localhost/r` with resumption enabled: the resumption id.
    fn managed(server: &Server, kind: Kind, user: &str) -> (Client, String) {
        let (mut client, features) = Client::logged_in(server, kind, user);
        assert!(features.has_child("sm", SM), "{}", String::from(&features));
        client.send("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
        let bound = client.next().expect("bound");
        assert!(String::from(&bound).contains(&format!("{user}@localhost/r")));
        client.send(&format!("<enable xmlns='{SM}' resume='true'/>"));
        let enabled = client.next().expect("enabled");
        assert_eq!(enabled.name(), "enabled", "{}", String::from(&enabled));
        assert_eq!(enabled.attr("resume"), Some("true"));
        assert!(enabled.attr("max").is_some());
        client.handled = Some(0);
        (client, enabled.attr("id").expect("an id").to_string())
    }

    /// Sends our stream header; returns the server's features.
    fn open(&mut self) -> Element {
        match &mut self.link {
            Link::Tcp { parser, .. } => {
                *parser = StreamParser::new(1 << 20);
                self.send(HEADER);
            }
            Link::WebSocket(_) => self.send(OPEN),
        }
        let first = self.next_raw().expect("the server's header");
        let features = if first.name() == "open" {
            self.next_raw().expect("features")
        } else {
            first
        };
        assert_eq!(features.name(), "features", "{}", String::from(&features));
        features
    }

    fn send(&mut self, text: &str) {
        match &mut self.link {
            Link::Tcp { socket, .. } => socket.write_all(text.as_bytes()).unwrap(),
            Link::WebSocket(socket) => socket.send(Message::text(text)).unwrap(),
        }
    }

    /// The next top-level element; a stanza counts towards `handled`. None after 5 s of
    /// nothing, or once the connection is closed.
    fn next(&mut self) -> Option<Element> {
        self.next_within(Duration::from_secs(5))
    }

    fn next_within(&mut self, wait: Duration) -> Option<Element> {
        let element = self.next_raw_within(wait)?;
        if element.ns() == "jabber:client" {
            if let Some(handled) = &mut self.handled {
                *handled += 1;
            }
        }
        Some(element)
    }

    fn next_raw(&mut self) -> Option<Element> {
        self.next_raw_within(Duration::from_secs(5))
    }

    fn next_raw_within(&mut self, wait: Duration) -> Option<Element> {
        let deadline = Instant::now() + wait;
        while self.read.is_empty() && !self.closed && Instant::now() < deadline {
            self.receive();
        }
        self.read.pop_front()
    }

    fn receive(&mut self) {
        match &mut self.link {
            Link::Tcp { socket, parser } => {
                let mut buffer = [0; 16384];
                match socket.read(&mut buffer) {
                    Ok(0) => self.closed = true,
                    Ok(n) => {
                        for event in parser.feed(&buffer[..n]).expect("well-formed") {
                            match event {
                                StreamEvent::Element(element) => self.read.push_back(element),
                                StreamEvent::Close => self.closed = true,
                                // The header, as WebSocket's `<open/>`.
                                StreamEvent::Open(_) => self.read.push_back(Element::bare(
                                    "open",
                                    "urn:ietf:params:xml:ns:xmpp-framing",
                                )),
                            }
                        }
                    }
                    Err(error) if timed_out(&error) => {}
                    Err(_) => self.closed = true,
                }
            }
            Link::WebSocket(socket) => match socket.read() {
                Ok(Message::Text(text)) => {
                    let element: Element = text.parse().expect("one element per message");
                    if element.name() == "close" {
                        self.closed = true;
                    }
                    self.read.push_back(element);
                }
                Ok(Message::Close(_)) => self.closed = true,
                Ok(_) => {}
                Err(tungstenite::Error::Io(error)) if timed_out(&error) => {}
                Err(_) => self.closed = true,
            },
        }
    }

    /// Stanzas until `quiet` passes without one, answering the server's `<r/>` never (what the
    /// tests acknowledge they say themselves); stream-management elements are left out.
    fn stanzas(&mut self, quiet: Duration) -> Vec<String> {
        std::iter::from_fn(|| loop {
            let element = self.next_within(quiet)?;
            if element.ns() != SM {
                return Some(String::from(&element));
            }
        })
        .collect()
    }

    fn ack(&mut self) {
        let h = self.handled.expect("managed");
        self.send(&format!("<a xmlns='{SM}' h='{h}'/>"));
    }

    /// The server's stream error, past whatever came before it.
    fn stream_error(&mut self) -> String {
        loop {
            let element = self.next_raw().expect("a stream error");
            if element.name() == "error" {
                return String::from(&element);
            }
        }
    }

    /// The connection ends without `</stream:stream>` or `<close/>`, as when a network fails.
    fn drop_connection(self) {
        let socket = match &self.link {
            Link::Tcp { socket, .. } => socket,
            Link::WebSocket(socket) => socket.get_ref(),
        };
        socket.shutdown(std::net::Shutdown::Both).unwrap();
    }
}

fn timed_out(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The TCP client `good`, in the room (an instant room it made).
fn occupant(server: &Server) -> NetworkHarness {
    let mut tcp = NetworkHarness::new(server.c2s, "conference.localhost");
    tcp.connect("good", "good@localhost/r", "pw").unwrap();
    let join = format!(
        "<presence xmlns='jabber:client' to='{ROOM}/good'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    );
    tcp.send("good", join.parse().unwrap()).unwrap();
    let instant = format!("<iq xmlns='jabber:client' type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>");
    tcp.send("good", instant.parse().unwrap()).unwrap();
    seen(&mut tcp);
    tcp
}

fn seen(tcp: &mut NetworkHarness) -> Vec<String> {
    std::iter::from_fn(|| tcp.next_stanza("good", Duration::from_millis(300)))
        .map(|stanza| String::from(&stanza))
        .collect()
}

fn say(tcp: &mut NetworkHarness, body: &str) {
    let message = format!(
        "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>{body}</body></message>"
    );
    tcp.send("good", message.parse().unwrap()).unwrap();
}

fn join(client: &mut Client, nick: &str) {
    client.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    client.stanzas(Duration::from_millis(500));
}

fn bodies(stanzas: &[String]) -> Vec<String> {
    stanzas
        .iter()
        .filter_map(|stanza| {
            let element: Element = stanza.parse().ok()?;
            Some(element.get_child("body", "jabber:client")?.text())
        })
        .collect()
}

fn presences_of(stanzas: &[String], nick: &str) -> Vec<String> {
    stanzas
        .iter()
        .filter(|s| s.starts_with("<presence") && s.contains(&format!("{ROOM}/{nick}")))
        .cloned()
        .collect()
}

fn resumes_with_exactly_what_was_not_acknowledged(kind: Kind) {
    let server = start("300");
    let mut good = occupant(&server);
    let (mut romeo, id) = Client::managed(&server, kind, "romeo");
    join(&mut romeo, "romeo");
    romeo.ack();
    seen(&mut good);
    say(&mut good, "one");
    assert_eq!(bodies(&romeo.stanzas(Duration::from_millis(300))), ["one"]);
    romeo.ack();
    say(&mut good, "two");
    assert_eq!(bodies(&romeo.stanzas(Duration::from_millis(300))), ["two"]);
    // "two" arrived but is not acknowledged: the connection drops first.
    let h = romeo.handled.unwrap() - 1;
    romeo.drop_connection();
    std::thread::sleep(Duration::from_millis(300));
    say(&mut good, "three");
    say(&mut good, "four");
    let meanwhile = seen(&mut good);
    assert!(
        presences_of(&meanwhile, "romeo").is_empty(),
        "the room saw the drop: {meanwhile:?}"
    );

    let (mut again, features) = Client::logged_in(&server, kind, "romeo");
    assert!(features.has_child("sm", SM));
    again.send(&format!("<resume xmlns='{SM}' previd='{id}' h='{h}'/>"));
    let resumed = again.next().expect("resumed");
    assert_eq!(resumed.name(), "resumed", "{}", String::from(&resumed));
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    // The server handled one stanza of ours since <enable/>: the join.
    assert_eq!(resumed.attr("h"), Some("1"));
    again.handled = Some(h);
    let resent = again.stanzas(Duration::from_millis(500));
    assert_eq!(bodies(&resent), ["two", "three", "four"], "{resent:?}");
    assert_eq!(resent.len(), 3, "{resent:?}");
    assert!(seen(&mut good).is_empty(), "the room saw the resumption");

    // The same occupant: it talks and is heard; its counts carried on.
    again.send(&format!(
        "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>back</body></message>"
    ));
    let heard = seen(&mut good);
    assert!(
        heard
            .iter()
            .any(|s| s.contains(&format!("from='{ROOM}/romeo'")) && s.contains("<body>back</body>")),
        "{heard:?}"
    );
    again.send(&format!("<r xmlns='{SM}'/>"));
    let answer = loop {
        let element = again.next().expect("an answer to <r/>");
        if element.name() == "a" {
            break element;
        }
    };
    assert_eq!(answer.attr("h"), Some("2"));
    // Acknowledging more than was sent ends the stream (XEP-0198 §4).
    let too_many = again.handled.unwrap() + 5;
    again.send(&format!("<a xmlns='{SM}' h='{too_many}'/>"));
    let error = again.stream_error();
    assert!(
        error.contains("undefined-condition") && error.contains("handled-count-too-high"),
        "{error}"
    );
}

fn bad_resumptions_get_the_xep_errors_and_change_nothing(kind: Kind) {
    let server = start("300");
    let mut good = occupant(&server);
    let (mut romeo, id) = Client::managed(&server, kind, "romeo");
    join(&mut romeo, "romeo");
    let handled = romeo.handled.unwrap();
    romeo.drop_connection();
    std::thread::sleep(Duration::from_millis(300));
    seen(&mut good);

    let failed = |client: &mut Client, resume: &str| {
        client.send(resume);
        let failed = client.next().expect("an answer to <resume/>");
        assert_eq!(failed.name(), "failed", "{}", String::from(&failed));
        String::from(&failed)
    };
    // An id never given.
    let (mut stranger, _) = Client::logged_in(&server, kind, "romeo");
    let answer = failed(
        &mut stranger,
        &format!("<resume xmlns='{SM}' previd='no-such-id' h='0'/>"),
    );
    assert!(answer.contains("item-not-found"), "{answer}");
    // The stream goes on: it may still bind.
    stranger.send("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>other</resource></bind></iq>");
    assert!(String::from(&stranger.next().unwrap()).contains("romeo@localhost/other"));

    // Another account's session.
    let (mut juliet, _) = Client::logged_in(&server, kind, "juliet");
    let answer = failed(
        &mut juliet,
        &format!("<resume xmlns='{SM}' previd='{id}' h='{handled}'/>"),
    );
    assert!(answer.contains("item-not-found"), "{answer}");

    // An h for more than was sent: the stream ends, the session stays resumable.
    let (mut wrong, _) = Client::logged_in(&server, kind, "romeo");
    wrong.send(&format!(
        "<resume xmlns='{SM}' previd='{id}' h='{}'/>",
        handled + 10
    ));
    let error = wrong.stream_error();
    assert!(
        error.contains("undefined-condition") && error.contains("handled-count-too-high"),
        "{error}"
    );
    assert!(
        presences_of(&seen(&mut good), "romeo").is_empty(),
        "a bad resumption touched the session"
    );

    let (mut right, _) = Client::logged_in(&server, kind, "romeo");
    right.send(&format!(
        "<resume xmlns='{SM}' previd='{id}' h='{handled}'/>"
    ));
    assert_eq!(right.next().unwrap().name(), "resumed");
}

fn a_session_not_resumed_in_time_leaves_its_room_once(kind: Kind) {
    let server = start("2");
    let mut good = occupant(&server);
    let (mut romeo, id) = Client::managed(&server, kind, "romeo");
    join(&mut romeo, "romeo");
    romeo.ack();
    seen(&mut good);
    // A message romeo never acknowledges: bounced to its sender when the time is out.
    let private = "<message xmlns='jabber:client' to='romeo@localhost/r' type='chat' id='pm'><body>psst</body></message>";
    good.send("good", private.parse().unwrap()).unwrap();
    assert_eq!(bodies(&romeo.stanzas(Duration::from_millis(300))), ["psst"]);
    romeo.drop_connection();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        presences_of(&seen(&mut good), "romeo").is_empty(),
        "left before the resumption time ran out"
    );
    std::thread::sleep(Duration::from_millis(2000));
    let after = seen(&mut good);
    let left = presences_of(&after, "romeo");
    assert_eq!(left.len(), 1, "{after:?}");
    assert!(left[0].contains("type='unavailable'"), "{left:?}");
    assert!(
        after
            .iter()
            .any(|s| s.contains("id='pm'") && s.contains("recipient-unavailable")),
        "the unacknowledged message was not bounced: {after:?}"
    );
    let (mut late, _) = Client::logged_in(&server, kind, "romeo");
    late.send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"));
    let failed = late.next().unwrap();
    assert!(String::from(&failed).contains("item-not-found"));
}

#[test]
fn tcp_resumes_with_exactly_what_was_not_acknowledged() {
    resumes_with_exactly_what_was_not_acknowledged(Kind::Tcp);
}

#[test]
fn websocket_resumes_with_exactly_what_was_not_acknowledged() {
    resumes_with_exactly_what_was_not_acknowledged(Kind::WebSocket);
}

#[test]
fn tcp_bad_resumptions_get_the_xep_errors_and_change_nothing() {
    bad_resumptions_get_the_xep_errors_and_change_nothing(Kind::Tcp);
}

#[test]
fn websocket_bad_resumptions_get_the_xep_errors_and_change_nothing() {
    bad_resumptions_get_the_xep_errors_and_change_nothing(Kind::WebSocket);
}

#[test]
fn tcp_session_not_resumed_in_time_leaves_its_room_once() {
    a_session_not_resumed_in_time_leaves_its_room_once(Kind::Tcp);
}

#[test]
fn websocket_session_not_resumed_in_time_leaves_its_room_once() {
    a_session_not_resumed_in_time_leaves_its_room_once(Kind::WebSocket);
}

#[test]
fn a_resumption_of_a_live_session_takes_it_over() {
    let server = start("300");
    let mut good = occupant(&server);
    let (mut first, id) = Client::managed(&server, Kind::Tcp, "romeo");
    join(&mut first, "romeo");
    let handled = first.handled.unwrap();
    seen(&mut good);
    // Across transports too: the session is the same whatever carries it.
    let (mut second, _) = Client::logged_in(&server, Kind::WebSocket, "romeo");
    second.send(&format!(
        "<resume xmlns='{SM}' previd='{id}' h='{handled}'/>"
    ));
    assert_eq!(second.next().unwrap().name(), "resumed");
    let error = first.stream_error();
    assert!(error.contains("conflict"), "{error}");
    say(&mut good, "to the new stream");
    assert_eq!(
        bodies(&second.stanzas(Duration::from_millis(500))),
        ["to the new stream"]
    );
    assert!(presences_of(&seen(&mut good), "romeo").is_empty());
}
