//! XMPP over WebSocket (RFC 7395) against a running `muc-host serve --http`: the framing from
//! `<open/>` to `<close/>`, a WebSocket client and a TCP client in one room through the same
//! core, XEP-0156 discovery, and bad input: each kind ends only its own connection with the
//! right error, nothing it sent after the fault is handled, and the other sessions carry on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use minidom::Element;
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_tests::Server;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

const OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
const CLOSE: &str = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";
const ROOM: &str = "lounge@conference.localhost";

fn start() -> Server {
    Server::start(&[
        "--insecure-auth",
        "--max-stanza-bytes",
        "4096",
        "--http",
        "127.0.0.1:0",
    ])
}

/// A WebSocket connection to the server's `/xmpp-websocket`, over TCP or TLS.
struct Ws<S = TcpStream> {
    socket: WebSocket<S>,
}

/// A connection to the HTTP server, reads timing out so that tests wait on deadlines.
fn tcp(address: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    stream
}

/// The handshake's request for `url`, asking for `subprotocol`, from a page of `origin`.
fn request(
    url: &str,
    subprotocol: Option<&str>,
    origin: Option<&str>,
) -> tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in [("Sec-WebSocket-Protocol", subprotocol), ("Origin", origin)] {
        if let Some(value) = value {
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(value).unwrap());
        }
    }
    request
}

impl Ws {
    /// Connects asking for `subprotocol`; the handshake's error when the server refuses it.
    fn connect_with(server: &Server, subprotocol: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let address = server.http.expect("started with --http");
        let url = format!("ws://{address}/xmpp-websocket");
        Ws::handshake(request(&url, subprotocol, None), tcp(address))
    }

    fn connect(server: &Server) -> Ws {
        Ws::connect_with(server, Some("xmpp")).expect("WebSocket handshake")
    }
}

impl<S: Read + Write> Ws<S> {
    fn handshake(
        request: tungstenite::handshake::client::Request,
        stream: S,
    ) -> Result<Ws<S>, tungstenite::Error> {
        // Large enough for any message the tests send, whatever the server accepts.
        let config = WebSocketConfig::default().max_message_size(Some(1 << 20));
        let (socket, response) =
            tungstenite::client::client_with_config(request, stream, Some(config)).map_err(
                |error| match error {
                    tungstenite::HandshakeError::Failure(error) => error,
                    tungstenite::HandshakeError::Interrupted(_) => unreachable!("blocking"),
                },
            )?;
        assert_eq!(
            response.headers().get("Sec-WebSocket-Protocol").unwrap(),
            "xmpp",
            "the server names the subprotocol it speaks"
        );
        Ok(Ws { socket })
    }

    /// The stream opened and its first features read.
    fn opened(&mut self) -> String {
        self.send(OPEN);
        let opened = self.next_text();
        assert!(
            opened.starts_with("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'")
                && opened.contains("from='localhost'"),
            "{opened}"
        );
        self.next_text()
    }
}

impl Ws {
    /// Logged in as `user@localhost` (any password: insecure auth), bound to resource `r`.
    fn logged_in(server: &Server, user: &str) -> Ws {
        let mut ws = Ws::connect(server);
        let features = ws.opened();
        assert!(
            features.contains("<mechanism>PLAIN</mechanism>"),
            "{features}"
        );
        assert!(
            !features.contains("starttls"),
            "no STARTTLS over WebSocket: {features}"
        );
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"));
        ws.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
        ));
        let success = ws.next_text();
        assert!(success.starts_with("<success"), "{success}");
        ws.send(OPEN);
        assert!(ws.next_text().starts_with("<open "));
        assert!(ws.next_text().contains("urn:ietf:params:xml:ns:xmpp-bind"));
        ws.send("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
        let bound = ws.next_text();
        assert!(
            bound.contains(&format!("<jid>{user}@localhost/r</jid>")),
            "{bound}"
        );
        ws
    }
}

impl<S: Read + Write> Ws<S> {
    fn send(&mut self, text: &str) {
        self.socket.send(Message::text(text)).unwrap();
    }

    fn send_message(&mut self, message: Message) {
        self.socket.send(message).unwrap();
    }

    /// The next message, each one element; panics after 5 s or at the end of the connection.
    fn next_text(&mut self) -> String {
        match self.next() {
            Some(Message::Text(text)) => text.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message, None once the connection is closed (a close frame or its end).
    fn next(&mut self) -> Option<Message> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.socket.read() {
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(message) => return Some(message),
                Err(tungstenite::Error::Io(error))
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => return None,
            }
        }
        panic!("nothing from the server for 5 s");
    }

    /// Texts until `needle` appears in one of them.
    fn read_until(&mut self, needle: &str) -> Vec<String> {
        let mut texts = Vec::new();
        while !texts.iter().any(|text: &String| text.contains(needle)) {
            texts.push(self.next_text());
        }
        texts
    }

    /// The server's stream error (after what it delivered before the fault) and `<close/>`,
    /// then its WebSocket close.
    fn expect_stream_error(&mut self, condition: &str) {
        let error = self.read_until("<stream:error").pop().unwrap();
        assert!(
            error.starts_with("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>")
                && error.contains(&format!(
                    "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                )),
            "expected {condition}, got {error}"
        );
        assert_eq!(self.next_text(), CLOSE);
        self.expect_closed();
    }

    fn expect_closed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.next() {
                Some(Message::Close(_)) | None => return,
                Some(other) => {
                    assert!(Instant::now() < deadline, "not closed; got {other:?}");
                }
            }
        }
    }
}

fn join(ws: &mut Ws, nick: &str) {
    ws.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    ws.read_until("status code='110'");
}

fn groupchat(body: &str) -> String {
    format!(
        "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>{body}</body></message>"
    )
}

/// The TCP client `good`, in the room (an instant room it made).
fn tcp_occupant(server: &Server) -> NetworkHarness {
    let mut tcp = NetworkHarness::new(server.c2s, "conference.localhost");
    tcp.connect("good", "good@localhost/r", "pw").unwrap();
    let join: Element = format!(
        "<presence xmlns='jabber:client' to='{ROOM}/good'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    .parse()
    .unwrap();
    tcp.send("good", join).unwrap();
    let instant = format!("<iq xmlns='jabber:client' type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>");
    tcp.send("good", instant.parse().unwrap()).unwrap();
    drain(&mut tcp);
    tcp
}

fn drain(tcp: &mut NetworkHarness) -> Vec<String> {
    std::iter::from_fn(|| tcp.next_stanza("good", Duration::from_millis(300)))
        .map(|stanza| String::from(&stanza))
        .collect()
}

#[test]
fn a_websocket_client_and_a_tcp_client_talk_in_one_room_and_the_stream_closes_cleanly() {
    let server = start();
    let mut tcp = tcp_occupant(&server);
    let mut ws = Ws::logged_in(&server, "web");
    join(&mut ws, "web");
    ws.send(&groupchat("from the browser"));
    let echoed = ws.read_until("from the browser");
    let echo = echoed.last().unwrap();
    assert!(
        echo.starts_with("<message xmlns='jabber:client'"),
        "each stanza declares its namespace: {echo}"
    );
    let seen = drain(&mut tcp);
    assert!(
        seen.iter()
            .any(|s| s.contains("<body>from the browser</body>")),
        "{seen:?}"
    );
    tcp.send("good", groupchat("from the desktop").parse().unwrap())
        .unwrap();
    ws.read_until("<body>from the desktop</body>");

    // RFC 7395 §3.6: our <close/> is answered with the server's, then the WebSocket closes;
    // the room hears the occupant leave.
    ws.send(CLOSE);
    assert_eq!(ws.next_text(), CLOSE);
    ws.expect_closed();
    let seen = drain(&mut tcp);
    assert!(
        seen.iter()
            .any(|s| s.contains("type='unavailable'") && s.contains("/web")),
        "{seen:?}"
    );
}

#[test]
fn discovery_names_the_websocket_endpoint() {
    let server = start();
    let address = server.http.unwrap();
    for (path, expected) in [
        (
            "/.well-known/host-meta",
            format!("<Link rel='urn:xmpp:alt-connections:websocket' href='ws://{address}/xmpp-websocket'/>"),
        ),
        (
            "/.well-known/host-meta.json",
            format!("\"href\":\"ws://{address}/xmpp-websocket\""),
        ),
    ] {
        let response = http_get(address, path);
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains("access-control-allow-origin: *"),
            "{path}: {response}"
        );
        assert!(response.contains(&expected), "{path}: {response}");
    }
    let metrics = http_get(address, "/metrics");
    assert!(
        metrics.contains("muc_connections_opened_total"),
        "{metrics}"
    );
    assert!(http_get(address, "/nothing-here").starts_with("HTTP/1.1 404"));
}

#[test]
fn a_page_from_another_origin_is_refused_and_the_servers_own_pages_and_named_ones_are_not() {
    let server = Server::start(&[
        "--insecure-auth",
        "--http",
        "127.0.0.1:0",
        "--web-origin",
        "https://chat.example.org",
    ]);
    let address = server.http.unwrap();
    let url = format!("ws://{address}/xmpp-websocket");
    let own = format!("http://{address}");
    for origin in [
        own.as_str(),
        "https://chat.example.org",
        "HTTPS://CHAT.example.org",
    ] {
        let mut ws = Ws::handshake(request(&url, Some("xmpp"), Some(origin)), tcp(address))
            .unwrap_or_else(|error| panic!("{origin} refused: {error}"));
        assert!(
            ws.opened().contains("<mechanism>PLAIN</mechanism>"),
            "{origin}"
        );
    }
    for origin in [
        "http://evil.example",
        "https://chat.example.org.evil.example",
        "null",
    ] {
        match Ws::handshake(request(&url, Some("xmpp"), Some(origin)), tcp(address)) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{origin}")
            }
            Err(other) => panic!("{origin}: {other}"),
            Ok(_) => panic!("{origin} was let in"),
        }
    }
}

#[test]
fn xmpp_over_websocket_and_discovery_work_through_https_with_the_client_listeners_certificate() {
    let server = Server::start(&["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"]);
    let address = server.https.expect("the HTTPS address announced");
    let tls = || server.tls_client(tcp(address));
    let url = format!("wss://localhost:{}/xmpp-websocket", address.port());
    let mut ws = Ws::handshake(request(&url, Some("xmpp"), None), tls()).expect("wss handshake");
    let features = ws.opened();
    assert!(
        features.contains("<mechanism>SCRAM-SHA-256</mechanism>"),
        "{features}"
    );
    ws.send(CLOSE);
    assert_eq!(ws.next_text(), CLOSE);
    let mut https = tls();
    let request = format!("GET /.well-known/host-meta.json HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n", address.port());
    https.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = https.read_to_string(&mut response);
    assert!(
        response.contains(&format!(
            "\"href\":\"wss://localhost:{}/xmpp-websocket\"",
            address.port()
        )),
        "{response}"
    );
}

fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    let mut socket = TcpStream::connect(address).unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_handshake_without_the_xmpp_subprotocol_is_refused() {
    let server = start();
    for subprotocol in [None, Some("chat"), Some("XMPP")] {
        match Ws::connect_with(&server, subprotocol) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "{subprotocol:?}")
            }
            Err(error) => panic!("{subprotocol:?}: {error}"),
            Ok(_) => panic!("{subprotocol:?}: accepted"),
        }
    }
}

#[test]
fn an_open_for_another_domain_or_a_stanza_before_it_is_refused_after_an_open() {
    let server = start();
    for (first, condition) in [
        (
            OPEN.replace("to='localhost'", "to='elsewhere.example'"),
            "host-unknown",
        ),
        (groupchat("too early"), "invalid-namespace"),
    ] {
        let mut ws = Ws::connect(&server);
        ws.send(&first);
        assert!(ws.next_text().starts_with("<open "), "{condition}");
        ws.expect_stream_error(condition);
    }
}

#[test]
fn each_kind_of_bad_input_ends_only_its_own_stream() {
    let server = start();
    let mut tcp = tcp_occupant(&server);
    let cases: [(&str, Message, &str); 6] = [
        ("bad1", Message::text("this is not XML"), "not-well-formed"),
        (
            "bad2",
            Message::text("<message xmlns='jabber:client'><body>half"),
            "not-well-formed",
        ),
        (
            "bad3",
            Message::text(format!("{}{}", groupchat("one"), groupchat("two"))),
            "not-well-formed",
        ),
        (
            "bad4",
            Message::binary(groupchat("in binary").into_bytes()),
            "unsupported-encoding",
        ),
        // Over the stanza limit, within the WebSocket message limit: the stream parser's error.
        (
            "bad5",
            Message::text(groupchat(&"x".repeat(5000))),
            "policy-violation",
        ),
        // Over the WebSocket message limit too: the same error.
        (
            "bad6",
            Message::text(groupchat(&"x".repeat(50_000))),
            "policy-violation",
        ),
    ];
    for (user, bad, condition) in cases {
        let mut ws = Ws::logged_in(&server, user);
        join(&mut ws, user);
        ws.send_message(bad);
        // Nothing after the fault is handled, even if the client goes on.
        let _ = ws.socket.send(Message::text(groupchat("after")));
        ws.expect_stream_error(condition);
    }
    // The TCP occupant saw the others come and go, and never a message of theirs.
    tcp.send("good", groupchat("still here").parse().unwrap())
        .unwrap();
    let seen = drain(&mut tcp);
    assert!(
        seen.iter().any(|s| s.contains("<body>still here</body>")),
        "{seen:?}"
    );
    for late in ["after", "one", "two", "in binary", "xxxx"] {
        assert!(
            !seen.iter().any(|s| s.contains(&format!("<body>{late}"))),
            "{late} reached the room: {seen:?}"
        );
    }
}
