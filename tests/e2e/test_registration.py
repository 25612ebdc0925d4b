"""XEP-0077 in-band registration on the bundled listener (`muc-host serve --registration`): the
stream feature inside TLS, the form, account creation, `conflict` for a taken name, and that an
account made this way logs in with SCRAM-SHA-256 and joins a room. Without `--registration`,
nothing of it is offered and a registration attempt before authentication ends the stream.

Registration is spoken on a raw socket (RFC 6120 STARTTLS by hand, Python's ssl module), so that
every byte the server answers is checked as sent; the logins afterwards are slixmpp clients."""

from __future__ import annotations

import socket
import ssl
import xml.etree.ElementTree as ET
from typing import Optional

import pytest

from flows import check, join, own_presence
from harness import (DOMAIN, MUC_DOMAIN, STANZA_TIMEOUT, STANZAS, Client, E2EFailure, error_condition,
                     show, statuses, text, user_add)

STREAMS = "http://etherx.jabber.org/streams"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
REGISTER = "jabber:iq:register"
REGISTER_FEATURE = "{http://jabber.org/features/iq-register}register"


class RawStream:
    """One c2s connection spoken by hand: the stream header, features, STARTTLS, and top-level
    elements read one at a time (`read`), everything received kept in `received` for failure
    messages."""

    def __init__(self, port: int, name: str = "raw"):
        self.name = name
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=STANZA_TIMEOUT)
        self.received = b""
        self.closed = False
        self.tls = False
        self.features = self._open()

    # -- the stream

    def _open(self) -> ET.Element:
        """Sends a stream header and returns the server's features."""
        self.parser = ET.XMLPullParser(["start", "end"])
        self.depth = 0
        self.ready: list[ET.Element] = []
        self.header: Optional[ET.Element] = None
        self.send(f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
                  f"xmlns:stream='{STREAMS}' version='1.0'>")
        features = self.read()
        if features is None or features.tag != f"{{{STREAMS}}}features":
            raise E2EFailure(f"{self.name}: expected stream features, got "
                             f"{'the end of the stream' if features is None else show(features)}; "
                             f"bytes received: {self.received!r}")
        return features

    def starttls(self) -> ET.Element:
        """RFC 6120 §5.4: <starttls/>, <proceed/>, the TLS handshake (the listener's certificate
        is self-signed: not verified), a new stream; returns the new features."""
        check(self.features.find(f"{{{TLS_NS}}}starttls") is not None,
              f"{self.name}: STARTTLS not offered: {show(self.features)}")
        self.send(f"<starttls xmlns='{TLS_NS}'/>")
        proceed = self.read()
        check(proceed is not None and proceed.tag == f"{{{TLS_NS}}}proceed",
              f"{self.name}: expected <proceed/>, got {None if proceed is None else show(proceed)}")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname=DOMAIN)
        self.tls = True
        self.features = self._open()
        return self.features

    def send(self, xml: str) -> None:
        self.sock.sendall(xml.encode())

    def read(self, timeout: float = STANZA_TIMEOUT) -> Optional[ET.Element]:
        """The next top-level element, or None once the server closed the stream (its
        </stream:stream> or the end of the connection)."""
        self.sock.settimeout(timeout)
        while not self.ready:
            if self.closed:
                return None
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            except socket.timeout:
                raise E2EFailure(f"{self.name}: nothing more within {timeout:.0f}s; bytes received: "
                                 f"{self.received!r}")
            if not chunk:
                self.closed = True
                continue
            self.received += chunk
            self.parser.feed(chunk)
            for event, el in self.parser.read_events():
                if event == "start":
                    if self.depth == 0:
                        self.header = el
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.ready.append(el)
                    elif self.depth == 0:  # </stream:stream>
                        self.closed = True
        return self.ready.pop(0)

    def iq(self, xml: str) -> ET.Element:
        """Sends an iq and returns the next element, which must be its answer."""
        iq_id = ET.fromstring(xml).get("id")
        self.send(xml)
        answer = self.read()
        check(answer is not None and answer.tag == "{jabber:client}iq" and answer.get("id") == iq_id
              and answer.get("type") in ("result", "error"),
              f"{self.name}: expected the answer to iq {iq_id}, got "
              f"{'the end of the stream' if answer is None else show(answer)}; sent {xml}")
        return answer

    def expect_stream_error(self, condition: str) -> ET.Element:
        """The next element is a stream error with `condition`, and the stream ends after it."""
        error = self.read()
        check(error is not None and error.tag == f"{{{STREAMS}}}error",
              f"{self.name}: expected a <stream:error/> ({condition}), got "
              f"{'the end of the stream' if error is None else show(error)}; bytes received: "
              f"{self.received!r}")
        conditions = [c.tag.split('}', 1)[1] for c in error
                      if c.tag.startswith(f"{{{STREAM_ERRORS}}}") and not c.tag.endswith("}text")]
        check(conditions == [condition],
              f"{self.name}: expected the stream error {condition}, got {conditions}: {show(error)}")
        after = self.read()
        check(after is None, f"{self.name}: the stream went on after its error: {show(after) if after else ''}")
        return error

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def register_get(stream: RawStream, iq_id: str = "reg-get") -> ET.Element:
    return stream.iq(f"<iq type='get' id='{iq_id}'><query xmlns='{REGISTER}'/></iq>")


def register_set(stream: RawStream, username: str, password: str, iq_id: str = "reg-set") -> ET.Element:
    return stream.iq(f"<iq type='set' id='{iq_id}'><query xmlns='{REGISTER}'>"
                     f"<username>{text(username)}</username><password>{text(password)}</password>"
                     f"</query></iq>")


def mechanisms(features: ET.Element) -> list[str]:
    m = features.find(f"{{{SASL_NS}}}mechanisms")
    return [] if m is None else [e.text for e in m]


def login(h, port: int, user: str, password: str, resource: str = "e2e") -> Client:
    client = h.client(f"{user}@{DOMAIN}/{resource}", password, port, name=user).connect()
    check(client.tls, f"{user}: logged in without STARTTLS (events {client.events})")
    check(client.mechanism == "SCRAM-SHA-256",
          f"{user}: negotiated {client.mechanism!r}, expected SCRAM-SHA-256 (offered: "
          f"{sorted(client.offered_mechanisms)})")
    check(client.full_jid == f"{user}@{DOMAIN}/{resource}", f"{user}: bound {client.full_jid!r}")
    return client


def refused(h, port: int, user: str, password: str, name: str) -> None:
    client = h.client(f"{user}@{DOMAIN}/e2e", password, port, name=name)
    outcome = client.try_connect()
    check(outcome == "auth-failed" and "session_start" not in client.events,
          f"{name}: logging in as {user} with {password!r} ended in {outcome!r}, expected a SASL "
          f"failure; events {client.events}\n{h.service_tails()}")


@pytest.fixture
def open_server(h):
    data = h.data_dir()
    user_add(data, f"alice@{DOMAIN}", "alice-Secret1")
    return h.bundled(data, "--registration")


@pytest.fixture
def closed_server(h):
    return h.bundled(h.data_dir())


def test_register_then_login_with_scram_and_join(h, open_server):
    port = open_server.port
    stream = RawStream(port, "registrant")
    try:
        # Before TLS only STARTTLS is offered (required): no registration in the clear.
        check(stream.features.find(REGISTER_FEATURE) is None,
              f"registration offered before TLS: {show(stream.features)}")
        features = stream.starttls()
        check(features.find(REGISTER_FEATURE) is not None,
              f"no <register xmlns='http://jabber.org/features/iq-register'/> among the features "
              f"after STARTTLS (XEP-0077 §8): {show(features)}")
        check("SCRAM-SHA-256" in mechanisms(features), f"no SCRAM-SHA-256 inside TLS: {show(features)}")

        # The form (XEP-0077 §3.1, examples 1-2).
        form = register_get(stream)
        check(form.get("type") == "result", f"the registration form was refused: {show(form)}")
        query = form.find(f"{{{REGISTER}}}query")
        check(query is not None, f"no jabber:iq:register query in the form: {show(form)}")
        for field in ["username", "password"]:
            check(query.find(f"{{{REGISTER}}}{field}") is not None,
                  f"the registration form lacks <{field}/>: {show(form)}")
        check(query.find(f"{{{REGISTER}}}registered") is None,
              f"an unauthenticated stream is told it is registered: {show(form)}")

        # The account (examples 3-4).
        done = register_set(stream, "newbie", "n3wbie pass!")
        check(done.get("type") == "result", f"registering newbie was refused: {show(done)}")
    finally:
        stream.close()

    # A fresh connection logs in with that password, over SCRAM-SHA-256, and joins a room.
    newbie = login(h, port, "newbie", "n3wbie pass!")
    room = f"registered@{MUC_DOMAIN}"
    join(newbie, room, "newbie")
    created = own_presence(newbie, room, "newbie")
    check({201, 110} <= statuses(created), f"newbie did not create the room {room}: {show(created)}")
    newbie.iq_ok(f'<iq type="get" id="ping1" to="{DOMAIN}"><ping xmlns="urn:xmpp:ping"/></iq>')

    # The wrong password is refused; the right one still works afterwards.
    refused(h, port, "newbie", "not-the-password", "newbie-wrong")
    login(h, port, "newbie", "n3wbie pass!", resource="again")


def test_registering_a_taken_name_is_a_conflict(h, open_server):
    stream = RawStream(open_server.port, "registrant")
    try:
        stream.starttls()
        # alice exists (made with `muc-host user add`).
        taken = register_set(stream, "alice", "hijacked", iq_id="reg-alice")
        check(taken.get("type") == "error" and error_condition(taken) == "conflict",
              f"registering the existing alice: expected an iq error with <conflict xmlns='{STANZAS}'/> "
              f"(XEP-0077 §3.1), got {show(taken)}")
        check(taken.find("{jabber:client}error").get("type") == "cancel",
              f"a conflict is an error of type cancel (XEP-0077 §3.1): {show(taken)}")
        # One account per connection: a second registration on this stream is not acceptable.
        first = register_set(stream, "bob", "bob-first", iq_id="reg-bob-1")
        check(first.get("type") == "result", f"registering bob was refused: {show(first)}")
        more = register_set(stream, "carol", "carol-pw", iq_id="reg-carol")
        check(more.get("type") == "error" and error_condition(more) == "not-acceptable",
              f"a second registration on one stream: expected <not-acceptable/>, got {show(more)}")
    finally:
        stream.close()
    # A name registered in-band is taken as well, for the next connection.
    stream = RawStream(open_server.port, "registrant-again")
    try:
        stream.starttls()
        again = register_set(stream, "bob", "bob-second", iq_id="reg-bob-2")
        check(again.get("type") == "error" and error_condition(again) == "conflict",
              f"registering bob twice: expected <conflict/>, got {show(again)}")
    finally:
        stream.close()
    # Neither conflict changed the password.
    refused(h, open_server.port, "alice", "hijacked", "alice-hijacked")
    login(h, open_server.port, "alice", "alice-Secret1")
    refused(h, open_server.port, "bob", "bob-second", "bob-second")
    login(h, open_server.port, "bob", "bob-first")
    refused(h, open_server.port, "carol", "carol-pw", "carol-never-made")


def test_without_registration_nothing_is_offered_and_nothing_created(h, closed_server):
    port = closed_server.port
    stream = RawStream(port, "registrant")
    try:
        features = stream.starttls()
        check(features.find(REGISTER_FEATURE) is None,
              f"registration offered without --registration: {show(features)}")
        check("SCRAM-SHA-256" in mechanisms(features), f"no SCRAM-SHA-256 inside TLS: {show(features)}")
        stream.send(f"<iq type='set' id='reg-set'><query xmlns='{REGISTER}'>"
                    f"<username>mallory</username><password>m4llory</password></query></iq>")
        stream.expect_stream_error("not-authorized")
    finally:
        stream.close()
    refused(h, port, "mallory", "m4llory", "mallory")
