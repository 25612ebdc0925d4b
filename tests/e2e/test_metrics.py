"""`muc-host serve --metrics`: the OpenMetrics text at /metrics, read over HTTP after real
traffic (two users in a persistent room exchanging groupchat messages), with values that match
that traffic."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from flows import check, expect_groupchat, groupchat, join, own_presence, submit_config
from harness import DOMAIN, MUC_DOMAIN, Client, is_presence, show, statuses, user_add

PASSWORDS = {"alice": "alice-Secret1", "bob": "correct horse"}
SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)(?:\s+\S+)?$")


def parse(text: str) -> dict[str, float]:
    """Samples by name with their labels as written (`name{kind="message"}`); comments skipped."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not an OpenMetrics sample line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def get(port: int, path: str):
    """(status, content type, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def login(h, port: int, user: str) -> Client:
    client = h.client(f"{user}@{DOMAIN}/e2e", PASSWORDS[user], port, name=user).connect()
    check(client.mechanism == "SCRAM-SHA-256", f"{user}: negotiated {client.mechanism!r}")
    return client


@pytest.fixture
def server(h):
    data = h.data_dir()
    for user, password in PASSWORDS.items():
        user_add(data, f"{user}@{DOMAIN}", password)
    host = h.bundled(data, "--metrics", "127.0.0.1:0")
    assert host.metrics_port, f"no 'muc-host: metrics listening on ADDR' line\n{host.tail()}"
    return host


def test_metrics_reflect_the_traffic(h, server):
    room = f"metered@{MUC_DOMAIN}"
    alice = login(h, server.port, "alice")
    join(alice, room, "alice")
    created = own_presence(alice, room, "alice")
    check(201 in statuses(created), f"the room was not created: {show(created)}")
    # Persistent: its configuration and history are durable writes, made in group commits.
    submit_config(alice, room, {"muc#roomconfig_persistentroom": "1"})
    bob = login(h, server.port, "bob")
    join(bob, room, "bob")
    own_presence(bob, room, "bob")
    alice.expect(lambda s: is_presence(s, f"{room}/bob"), "bob's arrival")

    sent = 0
    for i in range(3):
        for sender, nick in [(alice, "alice"), (bob, "bob")]:
            message = f"message {i} from {nick}"
            groupchat(sender, room, message, f"{nick}-{i}")
            sent += 1
            for reader in (alice, bob):
                expect_groupchat(reader, room, nick, message)
    recipients = 2

    status, content_type, text = get(server.metrics_port, "/metrics")
    assert status == 200, f"GET /metrics answered {status}: {text[:500]}"
    assert content_type.startswith("application/openmetrics-text"), \
        f"GET /metrics has Content-Type {content_type!r}"
    assert text.rstrip("\n").endswith("# EOF"), f"the OpenMetrics text does not end with '# EOF':\n{text[-300:]}"
    samples = parse(text)

    def value(name: str) -> float:
        assert name in samples, f"{name} missing from /metrics:\n{text}"
        return samples[name]

    expectations = [
        ("muc_connections", lambda v: v == 2, "the two bound sessions"),
        ("muc_connections_opened_total", lambda v: v >= 2, ">= 2 connections accepted"),
        ('muc_stanzas_in_total{kind="message"}', lambda v: v >= sent, f">= {sent} messages sent"),
        ('muc_stanzas_out_total{kind="message"}', lambda v: v >= sent * recipients,
         f">= {sent} messages x {recipients} recipients"),
        ("muc_plugin_calls_total", lambda v: v > 0, "> 0"),
        ("muc_rooms", lambda v: v >= 1, ">= 1"),
        ("muc_occupants", lambda v: v == 2, "alice and bob"),
        ("muc_storage_batch_keys_count", lambda v: v > 0, "> 0 group commits writing keys"),
    ]
    wrong = [f"{name} = {value(name):g}, expected {what}" for name, ok, what in expectations
             if not ok(value(name))]
    assert not wrong, "metrics that do not match the traffic:\n  " + "\n  ".join(wrong) + f"\n\n{text}"

    status, _, body = get(server.metrics_port, "/other")
    assert status == 404, f"GET /other answered {status}, expected 404: {body[:200]}"
