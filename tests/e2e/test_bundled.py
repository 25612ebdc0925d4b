"""The bundled server: `muc-host serve` with its own client listener (STARTTLS with a self-signed
certificate, SASL SCRAM), driven by slixmpp clients through the seed flow."""

import socket
import xml.etree.ElementTree as ET

import pytest

from flows import check, expect_groupchat, groupchat, join, own_presence, seed_flow, submit_config
from harness import DOMAIN, MUC_DOMAIN, E2EFailure, Client, is_presence, kind, show, statuses, user_add

PASSWORDS = {"alice": "alice-Secret1", "bob": "correct horse", "carol": "c4r0l!"}


@pytest.fixture
def server(h):
    data = h.data_dir()
    for user, password in PASSWORDS.items():
        user_add(data, f"{user}@{DOMAIN}", password)
    return h.bundled(data)


def login(h, server, user: str, resource: str = "e2e") -> Client:
    client = h.client(f"{user}@{DOMAIN}/{resource}", PASSWORDS[user], server.port, name=user).connect()
    check(client.tls, f"{user}: logged in without STARTTLS (events {client.events})")
    check(client.mechanism == "SCRAM-SHA-256",
          f"{user}: negotiated {client.mechanism!r}, expected SCRAM-SHA-256 (offered: "
          f"{sorted(client.offered_mechanisms)})")
    check(client.full_jid == f"{user}@{DOMAIN}/{resource}",
          f"{user}: bound {client.full_jid!r}, asked for the resource {resource!r}")
    return client


def test_seed_flow_over_starttls_and_scram(h, server):
    seeded = seed_flow(lambda user: login(h, server, user))
    offered = seeded.owner.offered_mechanisms
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]:
        assert mechanism in offered, f"{mechanism} not offered inside TLS: {sorted(offered)}"
    # The server's own answers: ping and an empty roster.
    owner = seeded.owner
    owner.iq_ok(f'<iq type="get" id="ping1" to="{DOMAIN}"><ping xmlns="urn:xmpp:ping"/></iq>')
    roster = owner.iq_ok('<iq type="get" id="roster1"><query xmlns="jabber:iq:roster"/></iq>')
    query = roster.find("{jabber:iq:roster}query")
    assert query is not None and len(query) == 0, f"expected an empty roster: {show(roster)}"


def test_wrong_password_and_unknown_user_are_refused(h, server):
    wrong = h.client(f"alice@{DOMAIN}/e2e", "not-the-password", server.port, name="alice-wrong")
    outcome = wrong.try_connect()
    assert outcome == "auth-failed", (f"a wrong password ended in {outcome!r}, expected a SASL failure; "
                                      f"events {wrong.events}\n{server.tail()}")
    assert "session_start" not in wrong.events
    nobody = h.client(f"nobody@{DOMAIN}/e2e", "whatever", server.port, name="nobody")
    outcome = nobody.try_connect()
    assert outcome == "auth-failed", f"an unknown account ended in {outcome!r}; events {nobody.events}"
    # The server still serves the right password.
    login(h, server, "alice")


def _stream_features(port: int) -> ET.Element:
    """The stream features the listener offers on a fresh TCP connection, before any TLS."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode())
        parser = ET.XMLPullParser(["end"])
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise E2EFailure(f"the listener closed the stream before its features: {data!r}")
            data += chunk
            parser.feed(chunk)
            for _, el in parser.read_events():
                if el.tag == "{http://etherx.jabber.org/streams}features":
                    return el


def test_plain_is_not_offered_before_tls(h, server):
    features = _stream_features(server.port)
    names = [c.tag for c in features]
    assert "{urn:ietf:params:xml:ns:xmpp-tls}starttls" in names, f"no STARTTLS offered: {show(features)}"
    mechanisms = features.find("{urn:ietf:params:xml:ns:xmpp-sasl}mechanisms")
    offered = [] if mechanisms is None else [m.text for m in mechanisms]
    assert "PLAIN" not in offered, f"PLAIN offered before TLS: {show(features)}"


def test_abrupt_disconnect_leaves_the_room(h, server):
    room = f"abrupt@{MUC_DOMAIN}"
    alice = login(h, server, "alice")
    join(alice, room, "alice")
    own_presence(alice, room, "alice")
    submit_config(alice, room, {})  # an instant room
    bob = login(h, server, "bob")
    join(bob, room, "bob")
    own_presence(bob, room, "bob")
    alice.expect(lambda s: is_presence(s, f"{room}/bob"), "bob's arrival")
    groupchat(bob, room, "about to vanish", "v1")
    expect_groupchat(alice, room, "bob", "about to vanish")

    bob.abort()  # the TCP connection closes: no unavailable presence, no stream close
    gone = alice.expect(lambda s: is_presence(s, f"{room}/bob", "unavailable"),
                        "bob's unavailable presence after his connection dropped", timeout=20)
    assert 110 not in statuses(gone), f"another occupant's departure carries 110: {show(gone)}"
    # The room goes on without him.
    groupchat(alice, room, "still here", "v2")
    expect_groupchat(alice, room, "alice", "still here")
    carol = login(h, server, "carol")
    join(carol, room, "carol")
    own_presence(carol, room, "carol")
    carol.expect_nothing(lambda s: kind(s) == "presence" and s.get("from") == f"{room}/bob"
                         and s.get("type") != "unavailable", "presence of the departed bob", within=0.5)


def test_resource_conflict_leaves_the_new_session_working(h, server):
    """A second login with the same full JID (RFC 6120 §7.7.2.2): whichever way the server
    resolves it, the session it keeps must be served."""
    first = login(h, server, "alice", resource="same")
    first.iq_ok(f'<iq type="get" id="p1" to="{DOMAIN}"><ping xmlns="urn:xmpp:ping"/></iq>')
    second = h.client(f"alice@{DOMAIN}/same", PASSWORDS["alice"], server.port, name="alice-again").connect()
    if second.full_jid == first.full_jid:
        first.wait_disconnected()  # replaced: the old session got a <conflict/> stream error
    second.iq_ok(f'<iq type="get" id="p2" to="{DOMAIN}"><ping xmlns="urn:xmpp:ping"/></iq>')
    room = f"conflict@{MUC_DOMAIN}"
    join(second, room, "alice")
    own_presence(second, room, "alice")
