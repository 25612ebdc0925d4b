//! Bad input on the wire against a running `muc-host serve`: each kind ends only its own
//! connection with the stream error RFC 6120 names, other sessions carry on, and nothing from
//! the bad connection after its fault is handled.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;

use minidom::Element;
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_tests::Server;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// A raw connection (TCP, or TLS over it), logged in as `user` when asked.
struct Raw<S = TcpStream> {
    socket: S,
}

impl Raw {
    fn open(server: &Server) -> Raw {
        let socket = TcpStream::connect(server.c2s).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Raw { socket }
    }

    fn logged_in(server: &Server, user: &str) -> Raw {
        let mut raw = Raw::open(server);
        raw.send(HEADER);
        raw.read_until("</stream:features>");
        let credentials = plain(user);
        raw.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
        ));
        raw.read_until("<success");
        raw.send(HEADER);
        raw.read_until("</stream:features>");
        raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
        raw.read_until("</iq>");
        raw
    }

    /// The stream secured by STARTTLS, trusting the certificate the server made.
    fn starttls(
        mut self,
        server: &Server,
    ) -> Raw<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        self.send(HEADER);
        self.read_until("</stream:features>");
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        self.read_until("<proceed");
        Raw {
            socket: server.tls_client(self.socket),
        }
    }
}

impl<S: Read + Write> Raw<S> {
    fn send(&mut self, text: &str) {
        self.socket.write_all(text.as_bytes()).unwrap();
        self.socket.flush().unwrap();
    }

    /// Everything read until `needle` appears (or the server closes, or 5 s pass).
    fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut text = String::new();
        let mut buffer = [0u8; 65536];
        while !text.contains(needle) && Instant::now() < deadline {
            match self.socket.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => text.push_str(&String::from_utf8_lossy(&buffer[..read])),
                Err(_) => continue,
            }
        }
        assert!(text.contains(needle), "expected {needle:?}, got {text:?}");
        text
    }

    /// Whether the server closed the connection (reads end).
    fn closed_by_server(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buffer = [0u8; 4096];
        while Instant::now() < deadline {
            match self.socket.read(&mut buffer) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => continue,
            }
        }
        false
    }
}

/// SASL PLAIN's credentials for `user` (any password: the server runs with insecure auth).
fn plain(user: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"))
}

fn join_and_talk(harness: &mut NetworkHarness, client: &str, body: &str) -> Vec<Element> {
    let message: Element = format!(
        "<message xmlns='jabber:client' to='lounge@conference.localhost' type='groupchat'><body>{body}</body></message>"
    )
    .parse()
    .unwrap();
    harness.send(client, message).unwrap();
    std::iter::from_fn(|| harness.next_stanza(client, Duration::from_millis(300))).collect()
}

#[test]
fn each_kind_of_bad_input_ends_only_its_own_stream() {
    let server = Server::start(&["--insecure-auth", "--max-stanza-bytes", "4096"]);
    let mut good = NetworkHarness::new(server.c2s, "conference.localhost");
    good.connect("good", "good@localhost/r", "pw").unwrap();
    let join: Element = "<presence xmlns='jabber:client' to='lounge@conference.localhost/good'>\
        <x xmlns='http://jabber.org/protocol/muc'/></presence>"
        .parse()
        .unwrap();
    good.send("good", join).unwrap();
    let instant = "<iq xmlns='jabber:client' type='set' id='c' to='lounge@conference.localhost'>\
        <query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>";
    good.send("good", instant.parse().unwrap()).unwrap();
    while good
        .next_stanza("good", Duration::from_millis(200))
        .is_some()
    {}

    let deep = format!(
        "<message>{}{}</message>",
        "<a>".repeat(200),
        "</a>".repeat(200)
    );
    let cases: [(&str, &str, &str); 7] = [
        ("bad1", "<message><body>unclosed</message>", "not-well-formed"),
        ("bad2", "<unknown xmlns='urn:example:nothing'/>", "unsupported-stanza-type"),
        ("bad4", "<!-- comments are not XMPP -->", "not-well-formed"),
        ("bad5", "", "policy-violation"),
        ("bad6", &deep, "policy-violation"),
        ("bad7", "<message to='lounge@conference.localhost' type='groupchat' type='chat'><body>twice</body></message>", "not-well-formed"),
        // Once logged in and bound, a header is no restart: the stream is not answered in silence.
        ("bad8", &HEADER[HEADER.find("<stream").unwrap()..], "invalid-xml"),
    ];
    for (user, bad, condition) in cases {
        let mut raw = Raw::logged_in(&server, user);
        raw.send("<presence to='lounge@conference.localhost/intruder'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
        raw.read_until("110");
        if bad.is_empty() {
            // Over the limit while it arrives: refused before it is complete.
            raw.send("<message to='lounge@conference.localhost' type='groupchat'><body>");
            raw.send(&"x".repeat(8192));
        } else {
            raw.send(bad);
        }
        let error = raw.read_until("</stream:stream>");
        assert!(
            error.contains(&format!(
                "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            )),
            "{user}: {error}"
        );
        // Nothing after the fault is handled, even if the client goes on.
        raw.send("<message to='lounge@conference.localhost' type='groupchat'><body>after</body></message>");
        assert!(
            raw.closed_by_server(),
            "{user}: the server closes the connection"
        );
    }

    // The good session saw the intruders come and go, and never a spoofed or late message.
    let seen = join_and_talk(&mut good, "good", "still here");
    let texts: Vec<String> = seen.iter().map(String::from).collect();
    assert!(
        texts.iter().any(|t| t.contains("<body>still here</body>")),
        "{texts:?}"
    );
    assert!(
        !texts
            .iter()
            .any(|t| t.contains(">after<") || t.contains("twice")),
        "{texts:?}"
    );
}

/// RFC 6120 §8.1.2.1: whatever `from` a client writes, the server stamps its own full JID.
#[test]
fn a_forged_from_is_overridden_with_the_session_jid() {
    let server = Server::start(&["--insecure-auth"]);
    let mut harness = NetworkHarness::new(server.c2s, "conference.localhost");
    harness.connect("good", "good@localhost/r", "pw").unwrap();
    harness
        .connect("forger", "forger@localhost/r", "pw")
        .unwrap();
    for (client, nick) in [("good", "good"), ("forger", "forger")] {
        let join: Element = format!(
            "<presence xmlns='jabber:client' to='lounge@conference.localhost/{nick}'>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        .parse()
        .unwrap();
        harness.send(client, join).unwrap();
        if client == "good" {
            let instant = "<iq xmlns='jabber:client' type='set' id='c' to='lounge@conference.localhost'>\
                <query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>";
            harness.send(client, instant.parse().unwrap()).unwrap();
        }
        while harness
            .next_stanza(client, Duration::from_millis(300))
            .is_some()
        {}
    }
    let forged: Element = "<message xmlns='jabber:client' from='good@localhost/r' \
        to='lounge@conference.localhost' type='groupchat'><body>forged</body></message>"
        .parse()
        .unwrap();
    harness.send("forger", forged).unwrap();
    let seen: Vec<Element> =
        std::iter::from_fn(|| harness.next_stanza("good", Duration::from_millis(500))).collect();
    let forged = seen
        .iter()
        .find(|stanza| stanza.name() == "message")
        .unwrap_or_else(|| panic!("the message is delivered: {seen:?}"));
    assert_eq!(
        forged.attr("from"),
        Some("lounge@conference.localhost/forger"),
        "the room names the real sender"
    );
    // The forger's stream goes on: it hears its own message back.
    let echoed: Vec<Element> =
        std::iter::from_fn(|| harness.next_stanza("forger", Duration::from_millis(500))).collect();
    assert!(
        echoed
            .iter()
            .any(|stanza| String::from(stanza).contains("forged")),
        "{echoed:?}"
    );
}

#[test]
fn the_wrong_stream_namespace_or_domain_is_refused_before_anything_else() {
    let server = Server::start(&["--insecure-auth"]);
    for (header, condition) in [
        (
            HEADER.replace("jabber:client", "jabber:server"),
            "invalid-namespace",
        ),
        (
            HEADER.replace("to='localhost'", "to='elsewhere.example'"),
            "host-unknown",
        ),
        (
            HEADER.replace("http://etherx.jabber.org/streams", "urn:wrong"),
            "invalid-namespace",
        ),
    ] {
        let mut raw = Raw::open(&server);
        raw.send(&header);
        let answer = raw.read_until("</stream:stream>");
        assert!(
            answer.starts_with("<?xml"),
            "our header comes first: {answer}"
        );
        assert!(answer.contains(&format!("<{condition} ")), "{answer}");
        assert!(raw.closed_by_server());
    }
}

#[test]
fn without_insecure_auth_tls_comes_before_any_password() {
    let server = Server::start(&[]);
    let mut raw = Raw::open(&server);
    raw.send(HEADER);
    let features = raw.read_until("</stream:features>");
    assert!(
        features
            .contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{features}"
    );
    assert!(!features.contains("mechanism"), "{features}");
    raw.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        plain("someone")
    ));
    raw.read_until("<encryption-required/>");
    raw.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    raw.read_until("<proceed");
}

#[test]
fn a_redundant_xml_prefix_declaration_neither_crashes_the_core_nor_the_recipient() {
    // Found by review: minidom panicked writing such a stanza back out, on the core thread.
    let server = Server::start(&["--insecure-auth"]);
    let mut good = NetworkHarness::new(server.c2s, "conference.localhost");
    good.connect("good", "good@localhost/r", "pw").unwrap();
    let mut raw = Raw::logged_in(&server, "odd");
    raw.send("<message to='good@localhost/r' xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'><body>hello</body></message>");
    let delivered = good
        .next_stanza("good", Duration::from_secs(5))
        .expect("delivered");
    assert!(String::from(&delivered).contains("<body>hello</body>"));
    // The service still answers.
    let ping: Element = "<iq xmlns='jabber:client' type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        .parse()
        .unwrap();
    good.send("good", ping).unwrap();
}

#[test]
fn a_second_stream_header_before_login_is_a_stream_error() {
    let server = Server::start(&["--insecure-auth"]);
    let mut raw = Raw::open(&server);
    raw.send(HEADER);
    raw.read_until("</stream:features>");
    raw.send(&HEADER[HEADER.find("<stream").unwrap()..]);
    let answer = raw.read_until("</stream:stream>");
    assert!(
        answer.contains("<invalid-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{answer}"
    );
    assert!(raw.closed_by_server());
    // The restarts negotiation asks for (here after SASL) are new streams, still welcome.
    let mut restarted = Raw::logged_in(&server, "after");
    restarted.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    restarted.read_until("id='p'");
}

/// Creates an account in the running server's data directory, as an operator does.
fn add_account(server: &Server, jid: &str, password: &str) {
    let status = std::process::Command::new(muc_tests::repo_root().join("target/release/muc-host"))
        .arg("--data")
        .arg(server.data.path())
        .args(["user", "add", jid, "--password", password])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "adding {jid}");
}

/// One SASL PLAIN attempt over STARTTLS on a new connection: the server's answer to it.
fn try_password(server: &Server, user: &str, password: &str) -> String {
    let mut raw = Raw::open(server).starttls(server);
    raw.send(HEADER);
    raw.read_until("</stream:features>");
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    raw.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
    ));
    let mut answer = raw.read_until("</");
    if answer.contains("<failure") && !answer.contains("</failure>") {
        answer.push_str(&raw.read_until("</failure>"));
    }
    answer
}

#[test]
fn password_guessing_is_locked_out_by_account_then_by_address() {
    // The throttle's defaults: 5 failures lock an account, 10 an address, for 5 s at first.
    let server = Server::start(&[]);
    add_account(&server, "victim@localhost", "right");
    add_account(&server, "bystander@localhost", "right");
    assert!(try_password(&server, "victim", "right").contains("<success"));
    for _ in 0..5 {
        let answer = try_password(&server, "victim", "wrong");
        assert!(answer.contains("<not-authorized/>"), "{answer}");
    }
    // Locked out: the right password is refused too, so that guessing on tells nothing.
    let answer = try_password(&server, "victim", "right");
    assert!(answer.contains("<temporary-auth-failure/>"), "{answer}");
    assert!(answer.contains("try again in"), "{answer}");
    // Another account from the same address is not locked (the address has 5 failures).
    assert!(try_password(&server, "bystander", "right").contains("<success"));
    // Guessing across accounts from one address locks the address: 5 more make its 10.
    for n in 0..5 {
        let answer = try_password(&server, &format!("guess{n}"), "wrong");
        assert!(answer.contains("<not-authorized/>"), "{answer}");
    }
    let answer = try_password(&server, "bystander", "right");
    assert!(answer.contains("<temporary-auth-failure/>"), "{answer}");
    // Once the time the server names has passed, the right password gets in again.
    std::thread::sleep(retry_after(&answer));
    assert!(try_password(&server, "victim", "right").contains("<success"));
}

/// The wait a `temporary-auth-failure` names ("try again in N s").
fn retry_after(answer: &str) -> Duration {
    let (_, after) = answer.split_once("try again in ").expect(answer);
    let seconds: f64 = after.split(' ').next().unwrap().parse().unwrap();
    Duration::from_secs_f64(seconds)
}
