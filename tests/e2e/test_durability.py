"""Durability of the bundled server: a persistent room's configuration, affiliations and history
survive a clean shutdown (SIGTERM, occupants told with 332) and a kill -9 under traffic, where
every message a client saw reflected must be in the history after the restart."""

import re
import threading
import time

import pytest

import conftest_report

from flows import (affiliation_list, history_bodies, check, expect_groupchat, expect_join, get_config_form, groupchat,
                   join, own_presence, room_features, room_name, set_affiliation, submit_config)
from harness import (DOMAIN, MUC_DOMAIN, E2EFailure, body, delayed, is_presence, kind, muc_item, show,
                     statuses, subject, user_add, wait_until)

PASSWORDS = {"owner": "own3r-pw", "bob": "b0b-pw", "carol": "car0l-pw", "reader": "r3ader-pw"}
HISTORY = "1000"  # muc#maxhistoryfetch: the plugin's maximum (plugin/src/features/history.rs)


@pytest.fixture
def data(h):
    d = h.data_dir()
    for user, password in PASSWORDS.items():
        user_add(d, f"{user}@{DOMAIN}", password)
    return d


def login(h, server, user):
    return h.client(f"{user}@{DOMAIN}/e2e", PASSWORDS[user], server.port, name=user).connect()


def create_persistent_room(owner, room, nick, extra=None):
    join(owner, room, nick)
    created = own_presence(owner, room, nick)
    check(201 in statuses(created), f"expected a new room (201): {show(created)}")
    config = {"muc#roomconfig_roomname": "Durable Room", "muc#roomconfig_roomdesc": "Kept across restarts",
              "muc#roomconfig_persistentroom": "1", "muc#maxhistoryfetch": HISTORY}
    config.update(extra or {})
    submit_config(owner, room, config)


def test_sigterm_then_restart_keeps_room(h, data):
    room = f"durable@{MUC_DOMAIN}"
    server = h.bundled(data)
    owner = login(h, server, "owner")
    create_persistent_room(owner, room, "Owner")
    topic = "What survives"
    owner.send(f'<message type="groupchat" to="{room}" id="s1"><subject>{topic}</subject></message>')
    owner.expect(lambda s: kind(s) == "message" and subject(s) == topic, "the subject reflected")
    set_affiliation(owner, room, f"bob@{DOMAIN}", "admin")
    set_affiliation(owner, room, f"carol@{DOMAIN}", "member")
    bob = login(h, server, "bob")
    join(bob, room, "Bob")
    bob_in = own_presence(bob, room, "Bob")
    check(muc_item(bob_in).get("affiliation") == "admin", f"bob is not admin: {show(bob_in)}")
    sent = []
    for i, (client, nick) in enumerate([(owner, "Owner"), (bob, "Bob"), (owner, "Owner")]):
        text = f"before shutdown #{i}"
        groupchat(client, room, text, f"b{i}")
        expect_groupchat(client, room, nick, text)
        sent.append(text)

    code = server.terminate()
    assert code == 0, f"muc-host exited with {code} on SIGTERM\n{server.tail()}"
    # The 332s are checked here and reported at the end, after the restart's checks have run too.
    shutdown_problems = []
    for client, nick in [(owner, "Owner"), (bob, "Bob")]:
        try:
            bye = client.expect(lambda s, n=nick: is_presence(s, f"{room}/{n}", "unavailable")
                                and 332 in statuses(s),
                                "unavailable self-presence with status 332 (system shutdown, XEP-0045 §9.9)")
            if 110 not in statuses(bye):
                shutdown_problems.append(f"the shutdown presence to an occupant about itself lacks 110: {show(bye)}")
        except E2EFailure as e:
            shutdown_problems.append(str(e))
        client.wait_disconnected()

    server.start()  # same data directory, a new port
    owner = login(h, server, "owner")
    join(owner, room, "Owner")
    got = expect_join(owner, room, "Owner", [], sent, topic)
    check(201 not in statuses(got.own), f"the room was created anew after the restart: {show(got.own)}")
    check(muc_item(got.own).get("affiliation") == "owner", f"the owner lost its affiliation: {show(got.own)}")
    fields = get_config_form(owner, room)
    for var, want in [("muc#roomconfig_roomname", ["Durable Room"]),
                      ("muc#roomconfig_roomdesc", ["Kept across restarts"]),
                      ("muc#roomconfig_persistentroom", ["1"]), ("muc#maxhistoryfetch", [HISTORY])]:
        check(fields.get(var) in (want, ["true"] if want == ["1"] else want),
              f"after the restart {var} is {fields.get(var)}, expected {want}")
    check(affiliation_list(owner, room, "admin") == {f"bob@{DOMAIN}"}, "the admin list changed across the restart")
    check(affiliation_list(owner, room, "member") == {f"carol@{DOMAIN}"}, "the member list changed across the restart")
    check(room_name(owner, room) == "Durable Room", "disco#info lost the room's name")
    check("muc_persistent" in room_features(owner, room), "disco#info no longer says muc_persistent")
    bob = login(h, server, "bob")
    join(bob, room, "Bob")
    bob_in = own_presence(bob, room, "Bob")
    check(muc_item(bob_in).get("affiliation") == "admin" and muc_item(bob_in).get("role") == "moderator",
          f"bob is no longer an admin/moderator after the restart: {show(bob_in)}")
    assert not shutdown_problems, "on SIGTERM:\n" + "\n".join(shutdown_problems)


SEQ = re.compile(r"^seq (\d+)$")


def test_kill9_under_traffic_keeps_every_reflected_message(h, data):
    room = f"stream@{MUC_DOMAIN}"
    # One sender as fast as it can: far past the default per-occupant message rate.
    server = h.bundled(data, "--room-messages-per-second", "0")
    owner = login(h, server, "owner")
    create_persistent_room(owner, room, "Owner")
    total = 900  # below HISTORY (1000)
    kill_after = 150  # reflected messages seen before the kill

    def reflected():
        with owner.cond:
            received = list(owner.received)
        return [int(SEQ.match(body(s)).group(1)) for s in received
                if kind(s) == "message" and s.get("from") == f"{room}/Owner" and not delayed(s)
                and body(s) is not None and SEQ.match(body(s))]

    stop = threading.Event()
    progress = {"sent": 0, "error": None}

    def sender():
        try:
            for n in range(total):
                if stop.is_set():
                    return
                owner.send(f'<message type="groupchat" to="{room}" id="seq{n}"><body>seq {n}</body></message>')
                progress["sent"] = n + 1
                if n % 4 == 3:
                    time.sleep(0.001)
        except Exception as e:  # the connection goes away under it: expected
            progress["error"] = repr(e)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(reflected()) >= kill_after, 30,
                   f"{kill_after} reflected messages (sent {progress['sent']})")
        sent_at_kill = progress["sent"]
        server.kill9()
    finally:
        stop.set()
        thread.join(10)
    owner.wait_disconnected(15)
    seen = reflected()
    check(seen == sorted(seen), f"the room reflected messages out of order: {seen}")
    check(sent_at_kill < total,
          f"the stream finished ({sent_at_kill} sent) before the kill: not a kill under traffic")

    server.start()
    reader = login(h, server, "reader")
    history = [int(SEQ.match(text).group(1)) for text in history_bodies(reader, room, "Reader")
               if SEQ.match(text)]
    lost = sorted(set(seen) - set(history))
    assert not lost, (f"{len(lost)} of the {len(seen)} messages the client saw reflected are missing from "
                      f"the history after kill -9: {lost[:20]}...; history has {len(history)} "
                      f"(max {max(history) if history else None}), sent before the kill: {sent_at_kill}")
    check(history == sorted(history), f"history out of order after the restart: {history[:50]}")
    check(len(history) == len(set(history)), "a message appears twice in the history")
    conftest_report.add(f"kill -9 under traffic: {sent_at_kill} sent, {len(seen)} seen reflected, "
                        f"{len(history)} in the history after the restart, none lost")
    # The room itself came back persistent and usable.
    groupchat(reader, room, "after the crash", "ac")
    expect_groupchat(reader, room, "Reader", "after the crash")
