//! Guests (`--guest-domain`, SASL ANONYMOUS, XEP-0175) against a running `muc-host serve`: a
//! guest logs in over TCP and over WebSocket as a fresh JID at the guest domain, enters a public
//! room and talks with an account there, is refused in a hidden room, creates no room, has no
//! roster, and once it leaves its JID is gone (a stanza to it bounces). Without a guest domain
//! ANONYMOUS is neither offered nor accepted; with one it is held to the rules of every
//! mechanism (TLS or a secure transport first).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use minidom::Element;
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_tests::Server;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

const GUESTS: &str = "guest.localhost";
const PUBLIC: &str = "square@conference.localhost";
const HIDDEN: &str = "backroom@conference.localhost";
const ANONYMOUS: &str = "<mechanism>ANONYMOUS</mechanism>";

/// A client connection read as text: what it got past the last needle is kept for the next.
trait Client {
    fn send(&mut self, text: &str);
    /// Opens (or, after SASL, restarts) a stream to `domain`; its features.
    fn open_stream(&mut self, domain: &str) -> String;
    /// More text from the server, empty when nothing came for a moment.
    fn receive(&mut self) -> String;
    fn buffer(&mut self) -> &mut String;
    /// Ends the stream as a client leaving does.
    fn close(&mut self);

    /// Everything up to and including `needle`; panics after 5 s without it.
    fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(at) = self.buffer().find(needle) {
                let rest = self.buffer().split_off(at + needle.len());
                return std::mem::replace(self.buffer(), rest);
            }
            assert!(
                Instant::now() < deadline,
                "expected {needle:?}, got {:?}",
                self.buffer()
            );
            let more = self.receive();
            self.buffer().push_str(&more);
        }
    }
}

struct Tcp {
    socket: TcpStream,
    text: String,
}

impl Tcp {
    fn open(server: &Server) -> Tcp {
        let socket = TcpStream::connect(server.c2s).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Tcp {
            socket,
            text: String::new(),
        }
    }
}

impl Client for Tcp {
    fn send(&mut self, text: &str) {
        self.socket.write_all(text.as_bytes()).unwrap();
    }

    fn open_stream(&mut self, domain: &str) -> String {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        ));
        self.read_until("</stream:features>")
    }

    fn receive(&mut self) -> String {
        let mut buffer = [0u8; 65536];
        match self.socket.read(&mut buffer) {
            Ok(read) => String::from_utf8_lossy(&buffer[..read]).into_owned(),
            Err(_) => String::new(),
        }
    }

    fn buffer(&mut self) -> &mut String {
        &mut self.text
    }

    fn close(&mut self) {
        self.send("</stream:stream>");
        self.read_until("</stream:stream>");
    }
}

struct Ws {
    socket: WebSocket<TcpStream>,
    text: String,
}

impl Ws {
    fn connect(server: &Server) -> Ws {
        let address = server.http.expect("started with --http");
        let mut request = format!("ws://{address}/xmpp-websocket")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        let stream = TcpStream::connect(address).unwrap();
        let (socket, _) = tungstenite::client(request, stream).expect("WebSocket handshake");
        socket
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Ws {
            socket,
            text: String::new(),
        }
    }
}

impl Client for Ws {
    fn send(&mut self, text: &str) {
        self.socket.send(Message::text(text)).unwrap();
    }

    fn open_stream(&mut self, domain: &str) -> String {
        self.send(&format!(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' version='1.0'/>"
        ));
        self.read_until("</stream:features>")
    }

    fn receive(&mut self) -> String {
        match self.socket.read() {
            Ok(Message::Text(text)) => text.to_string(),
            _ => String::new(),
        }
    }

    fn buffer(&mut self) -> &mut String {
        &mut self.text
    }

    fn close(&mut self) {
        self.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
        self.read_until("<close ");
    }
}

/// Logs in with ANONYMOUS on a stream to `domain` whose features were just read, binds, and
/// returns the JID the server made.
fn log_in_as_guest(client: &mut impl Client, domain: &str) -> String {
    // An empty trace ("=", RFC 6120 §6.4.2): nothing to tell.
    client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>=</auth>");
    client.read_until("<success");
    client.open_stream(domain);
    client.send("<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    let bound = client.read_until("</iq>");
    let jid = bound
        .split_once("<jid>")
        .and_then(|(_, rest)| rest.split_once("</jid>"))
        .map(|(jid, _)| jid.to_string())
        .unwrap_or_else(|| panic!("no JID bound: {bound}"));
    let (localpart, rest) = jid.split_once('@').unwrap();
    assert!(
        localpart.len() == 32 && localpart.chars().all(|c| c.is_ascii_hexdigit()),
        "an unguessable localpart: {jid}"
    );
    assert!(rest.starts_with(&format!("{GUESTS}/")), "{jid}");
    jid
}

fn presence(to: &str) -> String {
    format!("<presence xmlns='jabber:client' to='{to}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
}

fn groupchat(room: &str, body: &str) -> String {
    format!(
        "<message xmlns='jabber:client' to='{room}' type='groupchat'><body>{body}</body></message>"
    )
}

/// The account `owner`, in the public room and owning a hidden one.
fn owner(server: &Server) -> NetworkHarness {
    let mut owner = NetworkHarness::new(server.c2s, "conference.localhost");
    owner
        .connect("owner", "owner@localhost/desk", "pw")
        .unwrap();
    for (room, public) in [(PUBLIC, "1"), (HIDDEN, "0")] {
        owner
            .send("owner", parse(&presence(&format!("{room}/owner"))))
            .unwrap();
        let form = format!(
            "<iq xmlns='jabber:client' type='set' id='config' to='{room}'>\
             <query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field var='muc#roomconfig_publicroom'><value>{public}</value></field>\
             </x></query></iq>"
        );
        owner.send("owner", parse(&form)).unwrap();
    }
    seen_by_owner(&mut owner);
    owner
}

fn parse(xml: &str) -> Element {
    xml.parse().unwrap()
}

/// What the owner got since last asked.
fn seen_by_owner(owner: &mut NetworkHarness) -> Vec<String> {
    std::iter::from_fn(|| owner.next_stanza("owner", Duration::from_millis(300)))
        .map(|stanza| String::from(&stanza))
        .collect()
}

/// Waits until the owner gets a stanza containing every one of `needles`.
fn owner_sees(owner: &mut NetworkHarness, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        for stanza in seen_by_owner(owner) {
            if needles.iter().all(|needle| stanza.contains(needle)) {
                return stanza;
            }
            seen.push(stanza);
        }
    }
    panic!("the owner never saw {needles:?}: {seen:?}");
}

/// A guest's whole visit, on either transport: in the public room and talking, refused in the
/// hidden one and as a room's creator, no roster; once gone, its JID bounces.
fn visit(owner: &mut NetworkHarness, guest: &mut impl Client, jid: &str, nick: &str) {
    guest.send(&presence(&format!("{PUBLIC}/{nick}")));
    guest.read_until("status code='110'");
    owner_sees(owner, &[&format!("from='{PUBLIC}/{nick}'")]);
    guest.send(&groupchat(PUBLIC, &format!("hello from {nick}")));
    owner_sees(owner, &[&format!("<body>hello from {nick}</body>")]);
    owner
        .send(
            "owner",
            parse(&groupchat(PUBLIC, &format!("welcome {nick}"))),
        )
        .unwrap();
    guest.read_until(&format!("<body>welcome {nick}</body>"));

    guest.send(&presence(&format!("{HIDDEN}/{nick}")));
    let refused = guest.read_until("</presence>");
    assert!(
        refused.contains("type='error'")
            && refused.contains("<not-allowed")
            && refused.contains("only public rooms"),
        "{refused}"
    );
    let new_room = "newroom@conference.localhost";
    guest.send(&presence(&format!("{new_room}/{nick}")));
    let refused = guest.read_until("</presence>");
    assert!(
        refused.contains("<not-allowed") && refused.contains("may not create rooms"),
        "{refused}"
    );
    guest.send(
        "<iq xmlns='jabber:client' type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>",
    );
    let roster = guest.read_until("</iq>");
    assert!(
        roster.contains("type='error'") && roster.contains("<service-unavailable"),
        "a guest has no roster: {roster}"
    );

    guest.close();
    owner_sees(
        owner,
        &[&format!("from='{PUBLIC}/{nick}'"), "type='unavailable'"],
    );
    for to in [jid, jid.split('/').next().unwrap()] {
        let message = format!(
            "<message xmlns='jabber:client' to='{to}' type='chat' id='late'><body>still there?</body></message>"
        );
        owner.send("owner", parse(&message)).unwrap();
        let bounced = owner_sees(owner, &["id='late'", "type='error'"]);
        assert!(bounced.contains("service-unavailable"), "{bounced}");
    }
}

#[test]
fn guests_visit_public_rooms_over_tcp_and_websocket_and_leave_nothing() {
    let server = Server::start(&[
        "--insecure-auth",
        "--registration",
        "--guest-domain",
        GUESTS,
        "--http",
        "127.0.0.1:0",
    ]);
    let mut owner = owner(&server);

    // A stream to the guest domain: guests only, no registration.
    let mut tcp = Tcp::open(&server);
    let features = tcp.open_stream(GUESTS);
    assert!(
        features.contains(ANONYMOUS)
            && !features.contains("PLAIN")
            && !features.contains("iq-register"),
        "{features}"
    );
    let jid = log_in_as_guest(&mut tcp, GUESTS);
    visit(&mut owner, &mut tcp, &jid, "tcp-guest");

    // Over WebSocket, to the service's own domain, where accounts log in too.
    let mut ws = Ws::connect(&server);
    let features = ws.open_stream("localhost");
    assert!(
        features.contains(ANONYMOUS)
            && features.contains("<mechanism>PLAIN</mechanism>")
            && features.contains("iq-register"),
        "{features}"
    );
    let second = log_in_as_guest(&mut ws, "localhost");
    assert_ne!(jid, second, "every guest is someone new");
    visit(&mut owner, &mut ws, &second, "web-guest");
}

#[test]
fn without_a_guest_domain_there_is_no_anonymous_login() {
    let server = Server::start(&["--insecure-auth"]);
    let mut tcp = Tcp::open(&server);
    let features = tcp.open_stream("localhost");
    assert!(!features.contains(ANONYMOUS), "{features}");
    tcp.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>=</auth>");
    let failure = tcp.read_until("</failure>");
    assert!(failure.contains("<invalid-mechanism/>"), "{failure}");
    // Nor is the would-be guest domain served.
    let mut tcp = Tcp::open(&server);
    tcp.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{GUESTS}' version='1.0'>"
    ));
    let refused = tcp.read_until("</stream:stream>");
    assert!(refused.contains("host-unknown"), "{refused}");
}

#[test]
fn a_guest_needs_tls_or_a_secure_transport_like_everyone() {
    let server = Server::start(&["--guest-domain", GUESTS, "--http", "127.0.0.1:0"]);
    // TCP before STARTTLS: only STARTTLS is offered, and ANONYMOUS is refused.
    let mut tcp = Tcp::open(&server);
    let features = tcp.open_stream(GUESTS);
    assert!(
        features.contains("<required/>") && !features.contains(ANONYMOUS),
        "{features}"
    );
    tcp.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>=</auth>");
    let failure = tcp.read_until("</failure>");
    assert!(failure.contains("<encryption-required/>"), "{failure}");
    // A WebSocket from this machine counts as secure (a browser here, or a TLS proxy).
    let mut ws = Ws::connect(&server);
    let features = ws.open_stream(GUESTS);
    assert!(features.contains(ANONYMOUS), "{features}");
    log_in_as_guest(&mut ws, GUESTS);
}
