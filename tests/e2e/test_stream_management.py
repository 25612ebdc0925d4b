"""Stream management (XEP-0198) on the bundled server with slixmpp's xep_0198: a client in a room
loses its TCP connection mid-traffic (the socket aborted: no closing tag) and resumes; every
groupchat message sent meanwhile arrives exactly once and in order, and the other occupant sees
no presence. A session not resumed in time leaves the room with exactly one unavailable
presence, once the resumption time is out."""

import time

from flows import check, expect_groupchat, groupchat, join, own_presence, submit_config
from harness import DOMAIN, MUC_DOMAIN, body, is_presence, kind, show, user_add

PASSWORDS = {"alice": "alice-Secret1", "bob": "correct horse"}
ROOM = f"resumable@{MUC_DOMAIN}"


def start(h, resumption_timeout: int):
    data = h.data_dir()
    for user, password in PASSWORDS.items():
        user_add(data, f"{user}@{DOMAIN}", password)
    return h.bundled(data, "--resumption-timeout", str(resumption_timeout))


def in_the_room(h, server):
    """alice (with stream management, resumable) and bob in ROOM, alice's session acknowledged."""
    bob = h.client(f"bob@{DOMAIN}/e2e", PASSWORDS["bob"], server.port, name="bob").connect()
    join(bob, ROOM, "bob")
    own_presence(bob, ROOM, "bob")
    submit_config(bob, ROOM, {})  # an instant room
    alice = h.client(f"alice@{DOMAIN}/e2e", PASSWORDS["alice"], server.port, name="alice",
                     plugins=["xep_0198"]).connect()
    deadline = time.monotonic() + 10
    while "sm_enabled" not in alice.events:  # after session_start: slixmpp enables it then
        check(time.monotonic() < deadline, f"alice: stream management not enabled; events {alice.events}")
        time.sleep(0.05)
    sm = alice.xmpp.plugin["xep_0198"]
    check(sm.sm_id is not None, "alice: the server offered no resumption")
    join(alice, ROOM, "alice")
    own_presence(alice, ROOM, "alice")
    bob.expect(lambda s: is_presence(s, f"{ROOM}/alice"), "alice's arrival")
    return alice, bob


def alice_presences(bob):
    return [s for s in bob.received if kind(s) == "presence" and s.get("from") == f"{ROOM}/alice"]


def test_a_resumed_session_gets_what_was_sent_meanwhile_exactly_once_and_in_order(h):
    server = start(h, 60)
    alice, bob = in_the_room(h, server)
    presences_before = len(alice_presences(bob))
    sent = []
    for n in range(5):
        sent.append(f"before {n}")
        groupchat(bob, ROOM, sent[-1], f"b{n}")
    expect_groupchat(alice, ROOM, "bob", sent[-1])
    # Cut mid-traffic: bob keeps talking while alice's connection goes away without a word.
    for n in range(5):
        sent.append(f"during {n}")
        groupchat(bob, ROOM, sent[-1], f"d{n}")
    alice.abort()
    for n in range(10):
        sent.append(f"meanwhile {n}")
        groupchat(bob, ROOM, sent[-1], f"m{n}")
    expect_groupchat(bob, ROOM, "bob", sent[-1])
    time.sleep(1)
    outcome = alice.reconnect()
    check(outcome == "resumed", f"alice: reconnecting ended in {outcome!r}\n{server.tail()}")
    expect_groupchat(alice, ROOM, "bob", sent[-1])
    bob.expect_nothing(lambda s: kind(s) == "presence" and s.get("from") == f"{ROOM}/alice",
                       "a presence of alice after her resumption", within=1.0)
    got = [body(s) for s in alice.received
           if kind(s) == "message" and s.get("type") == "groupchat" and s.get("from") == f"{ROOM}/bob"
           and body(s) is not None]
    assert got == sent, f"alice got {got}, bob sent {sent}"
    assert len(alice_presences(bob)) == presences_before, \
        f"bob saw alice's presence change: {[show(s) for s in alice_presences(bob)]}"
    # The same occupant, still in the room.
    groupchat(alice, ROOM, "back", "back")
    expect_groupchat(bob, ROOM, "alice", "back")


def test_a_session_not_resumed_in_time_leaves_the_room_once(h):
    timeout = 3
    server = start(h, timeout)
    alice, bob = in_the_room(h, server)
    presences_before = len(alice_presences(bob))
    alice.abort()
    dropped = time.monotonic()
    bob.expect_nothing(lambda s: is_presence(s, f"{ROOM}/alice", "unavailable"),
                       "alice leaving before her resumption time ran out", within=timeout - 1.5)
    bob.expect(lambda s: is_presence(s, f"{ROOM}/alice", "unavailable"),
               "alice leaving once her resumption time ran out", timeout=timeout + 10)
    check(time.monotonic() - dropped >= timeout - 0.5,
          f"alice left {time.monotonic() - dropped:.1f}s after the drop, the resumption time is {timeout}s")
    time.sleep(1)
    after = alice_presences(bob)[presences_before:]
    assert len(after) == 1, f"bob saw {[show(s) for s in after]}"
