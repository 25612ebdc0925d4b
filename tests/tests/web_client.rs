//! The web client's pages and files against a running `muc-host serve --http --web-client DIR`
//! (a stand-in client directory, so no download is needed): `/` carries the settings the
//! server derives, `/join/ROOM` shows a configured room, says 404 for a missing one and for
//! hostile names, and the files are served with their types, confined to their directory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use minidom::Element;
use muc_host::scansion::network::NetworkHarness;
use muc_host::scansion::Harness;
use muc_tests::Server;

/// What a request got: the status, the headers (names in lower case) and the body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// GET `path` exactly as written (no normalisation), with `host` as the Host header.
fn get_as(server: &Server, host: &str, path: &str, extra: &str) -> Response {
    let address = server.http.expect("started with --http");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(key, value)| (key.to_ascii_lowercase(), value.to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(server: &Server, path: &str) -> Response {
    get_as(server, &server.http.unwrap().to_string(), path, "")
}

/// A stand-in for Converse.js's dist/: the entry script, a chunk in a subdirectory, a hidden
/// file; and a file beside the directory that must stay out of reach.
fn client_dir(root: &Path) -> std::path::PathBuf {
    let dist = root.join("dist");
    std::fs::create_dir_all(dist.join("chunkjs/locales")).unwrap();
    std::fs::write(dist.join("converse.min.js"), "export default {};\n").unwrap();
    std::fs::write(dist.join("converse.min.css"), "body {}\n").unwrap();
    std::fs::write(dist.join("chunkjs/locales/de.js"), "// de\n").unwrap();
    std::fs::write(dist.join(".integrity"), "sha512-x").unwrap();
    std::fs::write(root.join("secret.txt"), "not for browsers").unwrap();
    dist
}

fn start(root: &Path, extra: &[&str]) -> Server {
    let dist = client_dir(root);
    let mut args = vec![
        "--insecure-auth",
        "--http",
        "127.0.0.1:0",
        "--web-client",
        dist.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `owner` makes `room` (its localpart) and configures it with a name and a description.
fn configured_room(server: &Server, room: &str, name: &str, description: &str) -> NetworkHarness {
    let mut owner = NetworkHarness::new(server.c2s, "conference.localhost");
    owner.connect("owner", "owner@localhost/r", "pw").unwrap();
    let jid = format!("{room}@conference.localhost");
    let join: Element = format!(
        "<presence xmlns='jabber:client' to='{jid}/owner'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    .parse()
    .unwrap();
    owner.send("owner", join).unwrap();
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let config = format!(
        "<iq xmlns='jabber:client' type='set' id='c' to='{jid}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
         <field var='muc#roomconfig_roomname'><value>{}</value></field>\
         <field var='muc#roomconfig_roomdesc'><value>{}</value></field>\
         </x></query></iq>",
        escape(name),
        escape(description)
    );
    owner.send("owner", config.parse().unwrap()).unwrap();
    while owner
        .next_stanza("owner", Duration::from_millis(300))
        .is_some()
    {}
    owner
}

#[test]
fn the_client_page_carries_the_settings_the_server_derives() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[]);
    let page = get_as(&server, "chat.example:8080", "/", "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .is_some_and(|policy| policy.contains("default-src 'self'")));
    for expected in [
        "\"websocket_url\":\"ws://chat.example:8080/xmpp-websocket\"",
        "\"discover_connection_methods\":false",
        "\"muc_domain\":\"conference.localhost\"",
        "\"default_domain\":\"localhost\"",
        "\"auto_join_rooms\":[]",
        "src='/converse/converse.min.js'",
        "src='/web-client.js'",
    ] {
        assert!(
            page.body.contains(expected),
            "{expected} missing:\n{}",
            page.body
        );
    }
    // No guest domain: no guest page.
    assert_eq!(get(&server, "/join/anything/guest").status, 404);
    let script = get(&server, "/web-client.js");
    assert_eq!(script.status, 200);
    assert!(script.body.contains("converse.initialize"));
}

#[test]
fn a_hostile_host_header_cannot_end_the_settings_script() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[]);
    let page = get_as(&server, "x</script><script>alert(1)</script>", "/", "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.body.matches("</script>").count(),
        3,
        "the settings, the client and the start script, each closed once:\n{}",
        page.body
    );
    assert!(page.body.contains("\\u003c/script\\u003e"), "{}", page.body);
}

#[test]
fn an_invitation_shows_the_room_and_its_ways_in() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &["--guest-domain", "guest.localhost"]);
    let _owner = configured_room(&server, "tea", "Tea & <talk>", "All \"welcome\"");
    for path in ["/join/tea", "/join/tea@conference.localhost"] {
        let page = get(&server, path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        for expected in [
            "<h1>Tea &amp; &lt;talk&gt;</h1>",
            "All &quot;welcome&quot;",
            "href='xmpp:tea@conference.localhost?join'",
            "href='/join/tea/browser'",
            "href='/join/tea/guest'",
        ] {
            assert!(
                page.body.contains(expected),
                "{path}: {expected} missing:\n{}",
                page.body
            );
        }
    }
    let browser = get(&server, "/join/tea/browser");
    assert_eq!(browser.status, 200);
    assert!(browser
        .body
        .contains("\"auto_join_rooms\":[\"tea@conference.localhost\"]"));
    let guest = get(&server, "/join/tea/guest");
    assert_eq!(guest.status, 200);
    for expected in [
        "\"authentication\":\"anonymous\"",
        "\"jid\":\"guest.localhost\"",
        "\"auto_login\":true",
    ] {
        assert!(
            guest.body.contains(expected),
            "{expected} missing:\n{}",
            guest.body
        );
    }
}

#[test]
fn missing_rooms_and_hostile_names_get_a_404_page_that_shows_them_escaped() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[]);
    let missing = get(&server, "/join/nobody-here");
    assert_eq!(missing.status, 404);
    assert!(missing
        .body
        .contains("There is no room <strong>nobody-here</strong>"));
    for (path, shown) in [
        (
            "/join/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
        ),
        ("/join/..%2F..%2Fetc", "../../etc"),
        ("/join/tea@elsewhere.example", "tea@elsewhere.example"),
        ("/join/%22%27onload%3D", "&quot;&#39;onload="),
    ] {
        let page = get(&server, path);
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(
            page.body.contains(shown),
            "{path}: {shown} missing:\n{}",
            page.body
        );
        assert!(!page.body.contains("<script"), "{path}:\n{}", page.body);
    }
    // A room not yet configured is nobody's to see.
    let mut owner = NetworkHarness::new(server.c2s, "conference.localhost");
    owner.connect("owner", "owner@localhost/r", "pw").unwrap();
    let join: Element = "<presence xmlns='jabber:client' to='locked@conference.localhost/owner'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        .parse()
        .unwrap();
    owner.send("owner", join).unwrap();
    assert_eq!(get(&server, "/join/locked").status, 404);
}

#[test]
fn the_client_files_are_served_typed_cached_and_confined() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[]);
    let script = get(&server, "/converse/converse.min.js");
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(script.header("x-content-type-options"), Some("nosniff"));
    assert!(script
        .header("cache-control")
        .is_some_and(|cache| cache.contains("max-age")));
    assert_eq!(script.body, "export default {};\n");
    let etag = script.header("etag").expect("an ETag").to_string();
    let again = get_as(
        &server,
        "localhost",
        "/converse/converse.min.js",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(again.status, 304);
    assert_eq!(
        get(&server, "/converse/converse.min.css").header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        get(&server, "/converse/chunkjs/locales/de.js").body,
        "// de\n"
    );
    for hostile in [
        "/converse/../secret.txt",
        "/converse/%2e%2e/secret.txt",
        "/converse/..%2Fsecret.txt",
        "/converse/chunkjs/..%2F..%2Fsecret.txt",
        "/converse/.integrity",
        "/converse/chunkjs",
        "/converse/nothing.js",
    ] {
        let response = get(&server, hostile);
        assert_eq!(response.status, 404, "{hostile}: {}", response.body);
        assert!(!response.body.contains("not for browsers"), "{hostile}");
    }
}

#[test]
fn a_web_client_directory_without_the_client_is_refused_at_start() {
    // Any --web-client given must hold the client: the service refuses to start otherwise.
    let empty = tempfile::tempdir().unwrap();
    let binary = muc_tests::repo_root().join("target/release/muc-host");
    let data = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(binary)
        .arg("--data")
        .arg(data.path())
        .args(["serve", "--c2s", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--web-client")
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no converse.min.js"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
