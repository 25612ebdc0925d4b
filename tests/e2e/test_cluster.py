"""Several instances behind one ejabberd: the MUC domain balanced over component connections by
room (`domain_balancing`, `type: bare_destination`, `component_number: 2`).

First what ejabberd 23.01 itself does with the slots (plain slixmpp components, no muc-host), then
two `muc-host serve` instances as the two connections, with clients in 20 rooms, one instance
killed with -9 under traffic and restarted.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

import conftest_report
from ejabberd import ejabberd_login, start_ejabberd
from flows import (check, expect_groupchat, groupchat, join, own_presence, room_features, room_name,
                   submit_config)
from harness import (DOMAIN, LOGIN_TIMEOUT, MUC_DOMAIN, MUC_HOST, E2EFailure, MucHost, body, delayed,
                     ctl, error_condition, kind, show, statuses, wait_until)

ROOMS = [f"r{n:02d}@{MUC_DOMAIN}" for n in range(20)]


class RecordingComponent:
    """A slixmpp XEP-0114 component for the MUC domain that answers nothing and records the
    (bare `to`, body) of every message routed to it."""

    def __init__(self, h, ej, name: str):
        self.h, self.ej, self.name = h, ej, name
        self.messages: list[tuple[str, str]] = []
        self.events: list[str] = []
        self.cond = threading.Condition()
        self.xmpp = None

    def connect(self) -> "RecordingComponent":
        import slixmpp

        def make():
            # Made in the loop's thread: slixmpp takes the running loop.
            c = slixmpp.ComponentXMPP(MUC_DOMAIN, self.ej.secret, "127.0.0.1", self.ej.component_port)
            c.add_event_handler("session_start", lambda _: self._event("session_start"))
            c.add_event_handler("disconnected", lambda _: self._event("disconnected"))
            c.add_filter("in", self._incoming)
            c.connect()
            return c

        self.xmpp = self.h.loop.call(make)
        self._wait_event("session_start", LOGIN_TIMEOUT)
        return self

    def disconnect(self) -> None:
        """Closes the stream; ejabberd unregisters the connection's route when it ends."""
        self.h.loop.call(lambda: self.xmpp.disconnect())
        self._wait_event("disconnected", LOGIN_TIMEOUT)

    def _event(self, name: str) -> None:
        with self.cond:
            self.events.append(name)
            self.cond.notify_all()

    def _wait_event(self, name: str, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.events, timeout):
                raise E2EFailure(f"component {self.name}: no {name} within {timeout:.0f}s; events {self.events}\n"
                                 f"{self.ej.tail()}")

    def _incoming(self, stanza):
        el = stanza.xml
        # The component stream's namespace, not jabber:client.
        text = el.findtext("{jabber:component:accept}body")
        if kind(el) == "message" and text is not None:
            with self.cond:
                self.messages.append((el.get("to", "").split("/")[0], text))
                self.cond.notify_all()
        return stanza

    def rooms_of(self, tag: str) -> set[str]:
        """The rooms whose message with body `tag` reached this component."""
        with self.cond:
            return {room for room, text in self.messages if text == tag}


def send_to_every_room(client, tag: str) -> None:
    for room in ROOMS:
        client.send(f'<message type="groupchat" to="{room}" id="{client.next_id()}"><body>{tag}</body></message>')


def test_ejabberd_balances_rooms_over_component_slots(h):
    """ejabberd's slots, as read in ejabberd_router.erl and ejabberd_router_mnesia.erl: the first
    connection takes slot 1, the next the vacant slot 2; a room's stanzas go to the slot
    phash2(room, 2) + 1; a third connection is accepted and holds no slot; a slot emptied by a
    disconnection drops its stanzas silently (no error to the sender) and is not handed to the
    connection already waiting; the next connection to authenticate takes it."""
    ej = start_ejabberd(h, users=["alice"], component_number=2)
    slots = ej.slots_of(ROOMS)
    by_slot = {s: {room for room, slot in slots.items() if slot == s} for s in (1, 2)}
    assert by_slot[1] and by_slot[2], f"the 20 rooms hash to one slot only: {slots}"
    first = RecordingComponent(h, ej, "first").connect()
    second = RecordingComponent(h, ej, "second").connect()
    alice = ejabberd_login(h, ej, "alice")

    def delivered(tag: str, components: list[RecordingComponent], expected: set[str]) -> None:
        wait_until(lambda: set().union(*(c.rooms_of(tag) for c in components)) >= expected, 10,
                   f"messages {tag!r} to {sorted(expected)} at {[c.name for c in components]}")

    send_to_every_room(alice, "both")
    delivered("both", [first, second], set(ROOMS))
    assert first.rooms_of("both") == by_slot[1], \
        f"the first connection got {sorted(first.rooms_of('both'))}, slot 1 is {sorted(by_slot[1])}"
    assert second.rooms_of("both") == by_slot[2], \
        f"the second connection got {sorted(second.rooms_of('both'))}, slot 2 is {sorted(by_slot[2])}"

    spare = RecordingComponent(h, ej, "spare").connect()  # accepted, though both slots are taken
    send_to_every_room(alice, "spare")
    delivered("spare", [first, second], set(ROOMS))
    time.sleep(0.5)
    assert not spare.rooms_of("spare"), f"a connection beyond component_number got {spare.rooms_of('spare')}"

    first.disconnect()
    time.sleep(0.5)
    send_to_every_room(alice, "vacant")
    delivered("vacant", [second], by_slot[2])
    time.sleep(1)
    assert not spare.rooms_of("vacant"), \
        f"the spare connection took over the vacant slot without reconnecting: {spare.rooms_of('vacant')}"
    errors = alice.take_all(lambda s: s.get("type") == "error")
    assert not errors, f"a stanza for a vacant slot came back as an error: {[show(e) for e in errors]}"

    replacement = RecordingComponent(h, ej, "replacement").connect()
    send_to_every_room(alice, "refilled")
    delivered("refilled", [replacement, second], set(ROOMS))
    assert replacement.rooms_of("refilled") == by_slot[1], \
        f"the new connection got {sorted(replacement.rooms_of('refilled'))}, slot 1 is {sorted(by_slot[1])}"
    assert not spare.rooms_of("refilled"), "the spare connection got a slot"
    conftest_report.add(f"ejabberd bare_destination, 2 slots: rooms split {len(by_slot[1])}/{len(by_slot[2])} as "
                        "phash2 predicts; a vacant slot drops silently; a waiting spare connection stays idle; "
                        "the next connection takes the vacant slot")


# --------------------------------------------------------------------------------------------
# Two muc-host instances as the two connections

USERS = ["u0", "u1", "u2", "u3"]  # every user in every room; room i's sender is USERS[i % 4]
PERIOD = 0.5  # seconds between two messages to one room: 40 messages a second in all
HISTORY = "1000"  # muc#maxhistoryfetch, the plugin's maximum: the whole run fits
RESTART_DELAY = 1.0  # a supervisor's pause before restarting a dead instance (systemd's RestartSec=1)
PING = "urn:xmpp:ping"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
SEQ = re.compile(r"^(r\d\d) (\d+)$")


def store_args(request) -> list[str]:
    """How the instances keep their state: one shared PostgreSQL database when `muc-host serve`
    has `--store` and takes room leases on it (`--instance`), else each its own SQLite file in its
    own data directory (a shared store without leases is not a cluster: nothing fences a room)."""
    help_text = subprocess.run([str(MUC_HOST), "serve", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    if "--store" in help_text and "--instance" in help_text:
        return ["--store", request.getfixturevalue("postgres_url")]
    return []


def start_instance(h, ej, name: str, store: list[str]) -> MucHost:
    """`muc-host serve` as one of the MUC domain's component connections, with metrics."""
    muc = h.muc_host(h.data_dir(name), "--component", f"127.0.0.1:{ej.component_port}",
                     "--component-secret", ej.secret, "--muc-domain", MUC_DOMAIN, "--domain", DOMAIN,
                     "--metrics", "127.0.0.1:0", *store, name=name)
    return muc.start()


def scrape(muc: MucHost) -> dict[str, float]:
    """The instance's metrics, by sample name with labels (`muc_rooms`,
    `muc_stanzas_in_total{kind="message"}`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{muc.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


MESSAGES_IN = 'muc_stanzas_in_total{kind="message"}'


def live_seqs(client, room: str, since: float = 0.0, until: float = float("inf")) -> list[tuple[int, float]]:
    """(seq, arrival time) of the live (not history) groupchat messages of the run's stream that
    `client` received from `room`, in arrival order, within [since, until)."""
    local = room.split("@")[0]
    with client.cond:
        received = list(zip(client.received, client.received_at))
    out = []
    for el, at in received:
        if kind(el) == "message" and el.get("type") == "groupchat" and not delayed(el) \
                and el.get("from", "").startswith(room + "/") and since <= at < until:
            m = SEQ.match(body(el) or "")
            if m and m.group(1) == local:
                out.append((int(m.group(2)), at))
    return out


class Traffic:
    """Each room's sender sends the next number of the room's stream every PERIOD, from a thread,
    to every room at once; what was sent is kept with the time."""

    def __init__(self, clients: dict[str, object]):
        self.clients = clients
        self.next = {room: 1 for room in ROOMS}  # 0 is the probe that found the room's instance
        self.sent: dict[str, list[tuple[int, float]]] = {room: [] for room in ROOMS}
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="cluster-traffic")

    def sender(self, room: str):
        return self.clients[USERS[ROOMS.index(room) % len(USERS)]]

    def _run(self):
        try:
            while not self.stop.wait(PERIOD):
                for room in ROOMS:
                    seq = self.next[room]
                    self.next[room] += 1
                    self.sent[room].append((seq, time.monotonic()))
                    groupchat(self.sender(room), room, f"{room.split('@')[0]} {seq}", f"{room}-{seq}")
        except BaseException as e:  # the failure is the test's, reported by finish()
            self.error = e

    def start(self) -> "Traffic":
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        if self.error is not None:
            raise E2EFailure(f"the traffic thread failed: {self.error!r}")


def rejoin_when_dropped(clients: dict[str, object], rooms: list[str], timeout: float) -> dict[tuple[str, str], float]:
    """What a client does to find out it was dropped from a room (XEP-0410): every client pings
    itself in each of `rooms` until the room answers; `not-acceptable` (the room does not know
    it: the instance restarted) makes it rejoin, with the whole history. Silence (the slot is
    vacant, or the instance not back yet) makes it ping again. The time each (user, room) was in
    again."""
    pending = {(user, room) for user in clients for room in rooms}
    back: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise E2EFailure(f"after {timeout:.0f}s, {len(pending)} occupants still could not rejoin: "
                             f"{sorted(pending)[:10]}")
        asked = {}
        for user, room in pending:
            iq_id = clients[user].next_id("self-ping")
            clients[user].send(f'<iq type="get" id="{iq_id}" to="{room}/{user}"><ping xmlns="{PING}"/></iq>')
            asked[(user, room)] = iq_id
        time.sleep(1.0)
        for (user, room), iq_id in asked.items():
            answers = clients[user].take_all(lambda s, i=iq_id: kind(s) == "iq" and s.get("id") == i)
            if not answers:
                continue
            answer = answers[0]
            if answer.get("type") == "result":  # still in: the room was never lost
                pending.discard((user, room))
                back[(user, room)] = time.monotonic()
            elif error_condition(answer) == "not-acceptable":
                join(clients[user], room, user, history=f'<history maxstanzas="{HISTORY}"/>')
                own = own_presence(clients[user], room, user, timeout=20)
                check(201 not in statuses(own), f"{room} was created anew on rejoining: {show(own)}")
                pending.discard((user, room))
                back[(user, room)] = time.monotonic()
            else:
                raise E2EFailure(f"{user}'s self-ping in {room} got {show(answer)}")
    return back


def check_stream(what: str, got: list[int], want: list[int]) -> None:
    """`got` is exactly `want`: each once, in order."""
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        duplicates = sorted({s for s in got if got.count(s) > 1})
        raise E2EFailure(f"{what}: {len(got)} received, {len(want)} expected; missing {missing[:20]}, "
                         f"unexpected {extra[:20]}, twice {duplicates[:20]}, in order: {got == sorted(got)}")


def create_rooms(owner) -> None:
    """Every room of ROOMS, made by `owner` (whose nickname is its user name), persistent and named
    after itself; `owner` stays in."""
    nick = owner.jid.split("@")[0]
    for room in ROOMS:
        join(owner, room, nick)
        created = own_presence(owner, room, nick)
        check(201 in statuses(created), f"{room} existed already: {show(created)}")
        submit_config(owner, room, {"muc#roomconfig_roomname": f"Room {room.split('@')[0]}",
                                    "muc#roomconfig_persistentroom": "1", "muc#maxhistoryfetch": HISTORY})


def find_instances(instances: dict[str, MucHost], sender_of, text_of) -> dict[str, str]:
    """Which instance serves each room: the one whose count of messages in moves when the room's
    sender (`sender_of(room)`: client and nickname, an occupant) says `text_of(room)` there."""
    served_by = {}
    for room in ROOMS:
        before = {name: scrape(muc).get(MESSAGES_IN, 0.0) for name, muc in instances.items()}
        client, nick = sender_of(room)
        groupchat(client, room, text_of(room), client.next_id())
        expect_groupchat(client, room, nick, text_of(room))
        moved = [name for name, muc in instances.items() if scrape(muc).get(MESSAGES_IN, 0.0) != before[name]]
        check(len(moved) == 1, f"{room}'s message reached {moved or 'no instance'}")
        served_by[room] = moved[0]
    return served_by


def test_two_instances_share_the_muc_domain_and_survive_a_kill(h, request):
    ej = start_ejabberd(h, users=USERS, component_number=2)
    store = store_args(request)
    slot = ej.slots_of(ROOMS)
    # The first connection takes slot 1, the second the vacant slot 2.
    first = start_instance(h, ej, "muc-a", store)
    second = start_instance(h, ej, "muc-b", store)
    instances = {"muc-a": first, "muc-b": second}
    clients = {user: ejabberd_login(h, ej, user) for user in USERS}

    # Every room made persistent by u0, named, and joined by everyone.
    create_rooms(clients["u0"])
    for user in USERS[1:]:
        for room in ROOMS:
            join(clients[user], room, user)
            own_presence(clients[user], room, user)

    # Which instance serves which room: each room's first message (seq 0) counted by one.
    traffic = Traffic(clients)
    served_by = find_instances(instances, lambda room: (traffic.sender(room), USERS[ROOMS.index(room) % len(USERS)]),
                               lambda room: f"{room.split('@')[0]} 0")
    for room in ROOMS:
        traffic.sent[room].append((0, time.monotonic()))
    rooms_of = {name: [r for r in ROOMS if served_by[r] == name] for name in instances}
    check(all(rooms_of.values()), f"one instance serves every room: {rooms_of}")
    predicted = {room: "muc-a" if slot[room] == 1 else "muc-b" for room in ROOMS}
    check(served_by == predicted, f"rooms are not where ejabberd's slots put them: served {served_by}, "
                                  f"slots {slot}")
    # No room is in memory on both: each instance holds exactly its own.
    in_memory = {name: scrape(muc)["muc_rooms"] for name, muc in instances.items()}
    check(in_memory == {name: len(rooms) for name, rooms in rooms_of.items()},
          f"rooms in memory per instance {in_memory}, served {({n: len(r) for n, r in rooms_of.items()})}")

    # The service's room list comes from the instance holding the domain's own slot. With a
    # shared store it lists every room; with a store each, only that instance's.
    listed = service_rooms(clients["u1"])
    domain_slot = "muc-a" if ej.slots_of([f"@{MUC_DOMAIN}"])[f"@{MUC_DOMAIN}"] == 1 else "muc-b"
    if store:
        check(listed == set(ROOMS), f"disco#items on the service lists {sorted(listed)}")
        # Each holds the leases of its rooms, and `ctl status` on either shows both.
        leases = {name: scrape(muc).get("muc_leases") for name, muc in instances.items()}
        check(leases == {name: float(len(rooms)) for name, rooms in rooms_of.items()},
              f"leases per instance {leases}, rooms served {({n: len(r) for n, r in rooms_of.items()})}")
        status = ctl(second.data, "status")
        check(status.returncode == 0, f"ctl status: {status.stdout}{status.stderr}")
        members = [line for line in status.stdout.splitlines() if line.startswith("  ")]
        for name, muc in instances.items():
            mine = [line for line in members if f":{Path(muc.data).resolve()}" in line]
            check(len(mine) == 1 and f"alive, {len(rooms_of[name])} rooms" in mine[0],
                  f"ctl status on muc-b does not show {name} alive with its rooms:\n{status.stdout}")
    else:
        check(listed == set(rooms_of[domain_slot]),
              f"disco#items answered by {domain_slot} lists {sorted(listed)}, it serves {rooms_of[domain_slot]}")

    # Steady traffic, then muc-a killed under it and restarted after RESTART_DELAY, as a
    # supervisor would.
    victim, survivor = rooms_of["muc-a"], rooms_of["muc-b"]
    traffic.start()
    time.sleep(5)
    killed_at = time.monotonic()
    first.kill9()
    time.sleep(RESTART_DELAY)
    first.start()
    connected_at = time.monotonic()
    back = rejoin_when_dropped(clients, victim, timeout=60)
    all_back = max(back.values())
    time.sleep(4)  # traffic with every occupant back in
    traffic.finish()
    time.sleep(2)  # the last messages arrive

    # The survivor's rooms: every message to every occupant once and in order, none held up (the
    # gap between two arrivals also counts the sending thread's own pauses; the delay from
    # sending to arrival is the servers').
    longest_gap = slowest = 0.0
    for room in survivor:
        want = [seq for seq, _ in traffic.sent[room]]
        sent_at = dict(traffic.sent[room])
        for user in USERS:
            got = live_seqs(clients[user], room)
            check_stream(f"{user} in {room} (muc-b)", [s for s, _ in got], want)
            times = [at for _, at in got]
            longest_gap = max([longest_gap] + [b - a for a, b in zip(times, times[1:])])
            slowest = max([slowest] + [at - sent_at[seq] for seq, at in got])
    check(slowest < 4 * PERIOD, f"a message in muc-b's rooms took {slowest:.2f}s while muc-a was down")

    # The killed instance's rooms.
    silences = []
    outcome = {"reflected": 0, "refused": 0, "vanished": 0}  # of what was sent to muc-a's rooms
    for room in victim:
        reflected = {seq for seq, _ in live_seqs(traffic.sender(room), room)}
        refused = {int(el.get("id").rsplit("-", 1)[1]) for el in traffic.sender(room).take_all(
            lambda el, r=room: kind(el) == "message" and el.get("type") == "error"
            and el.get("id", "").startswith(r + "-"))}
        for seq, _ in traffic.sent[room]:
            outcome["reflected" if seq in reflected else "refused" if seq in refused else "vanished"] += 1
        acknowledged = {seq for seq, at in live_seqs(traffic.sender(room), room, until=killed_at)}
        for user in USERS:
            before_kill = [s for s, _ in live_seqs(clients[user], room, until=killed_at)]
            check_stream(f"{user} in {room} (muc-a) before the kill", before_kill,
                         list(range(len(before_kill))))
            # Everything live after the kill is in order and once, and after everyone was back,
            # everything sent reached everyone.
            after = [s for s, _ in live_seqs(clients[user], room, since=killed_at)]
            check(after == sorted(set(after)), f"{user} in {room} after the restart: {after}")
            sent_after_all_back = [seq for seq, at in traffic.sent[room] if at > all_back + 0.5]
            got_late = [s for s in after if s >= sent_after_all_back[0]]
            check_stream(f"{user} in {room} (muc-a) once everyone was back", got_late, sent_after_all_back)
        # Every message whose reflection reached its sender before the kill is in the archive,
        # once: the history the rejoining sender got.
        history = history_seqs(traffic.sender(room), room)
        lost = sorted(acknowledged - set(history))
        check(not lost, f"{room}: {len(lost)} acknowledged messages missing from the history: {lost[:20]}")
        check(len(history) == len(set(history)) and history == sorted(history),
              f"{room}: the history after the restart repeats or reorders: {history}")
        delivered = [at for user in USERS for _, at in live_seqs(clients[user], room)]
        last_before = max(at for at in delivered if at < killed_at)
        first_after = min(at for at in delivered if at > killed_at)
        silences.append(first_after - last_before)
    # The rooms came back with their configuration.
    for room in victim[:3]:
        check(room_name(clients["u1"], room) == f"Room {room.split('@')[0]}", f"{room} lost its name")
        check("muc_persistent" in room_features(clients["u1"], room), f"{room} is no longer persistent")
    conftest_report.add(
        f"cluster (ejabberd bare_destination, 2 instances, {'shared store' if store else 'SQLite each'}): "
        f"{len(rooms_of['muc-a'])}/{len(rooms_of['muc-b'])} rooms, {sum(len(s) for s in traffic.sent.values())} "
        f"messages; service disco#items from {domain_slot}: {len(listed)} rooms; kill -9 of muc-a, restart "
        f"{RESTART_DELAY:.0f}s later: "
        f"link back {connected_at - killed_at:.2f}s after the kill, every occupant rejoined by "
        f"{all_back - killed_at:.1f}s (self-ping every 1s); its rooms silent {min(silences):.1f}-"
        f"{max(silences):.1f}s; sent to them: {outcome['reflected']} reflected, {outcome['refused']} refused "
        f"(sender not in the room), {outcome['vanished']} vanished (no answer); muc-b's rooms: slowest delivery {slowest:.2f}s, longest pause {longest_gap:.2f}s")


def service_rooms(client) -> set[str]:
    """The rooms the MUC service lists (disco#items on its domain, one page of up to 100)."""
    iq_id = client.next_id("items")
    answer = client.iq_ok(f'<iq type="get" id="{iq_id}" to="{MUC_DOMAIN}"><query xmlns="{DISCO_ITEMS}"/></iq>')
    return {item.get("jid") for item in answer.iter(f"{{{DISCO_ITEMS}}}item")}


def history_seqs(client, room: str) -> list[int]:
    """The stream's numbers in the history (delayed messages) `client` got from `room`."""
    local = room.split("@")[0]
    with client.cond:
        received = list(client.received)
    out = []
    for el in received:
        if kind(el) == "message" and delayed(el) and el.get("from", "").startswith(room + "/"):
            m = SEQ.match(body(el) or "")
            if m and m.group(1) == local:
                out.append(int(m.group(2)))
    return out


def test_rooms_keep_their_state_when_ejabberd_gives_the_slots_to_other_instances(h, request):
    """ejabberd restarts while both instances run, and the slots go the other way round: muc-b
    connects first and takes slot 1, muc-a (paused meanwhile, so still holding its rooms) slot 2.
    Every room is then served by the other instance, and must be the same room: configuration and
    history intact, no new room made."""
    store = store_args(request)
    if not store:
        pytest.skip("with a SQLite file per instance the rooms' state stays behind when their slot "
                    "changes hands (every room is made anew): needs `muc-host serve --store`")
    ej = start_ejabberd(h, users=["u0"], component_number=2)
    slot = ej.slots_of(ROOMS)
    first = start_instance(h, ej, "muc-a", store)
    second = start_instance(h, ej, "muc-b", store)
    instances = {"muc-a": first, "muc-b": second}
    owner = ejabberd_login(h, ej, "u0")
    create_rooms(owner)
    served_by = find_instances(instances, lambda room: (owner, "u0"), lambda room: f"{room} before")
    check(served_by == {room: "muc-a" if slot[room] == 1 else "muc-b" for room in ROOMS},
          f"rooms are not where ejabberd's slots put them: {served_by}")

    marks = {name: muc.service.line_count() for name, muc in instances.items()}
    first.service.signal(signal.SIGSTOP)
    try:
        ej.stop()
        owner.wait_disconnected()
        ej.start()
        second.wait_component_connected(marks["muc-b"], timeout=60)
    finally:
        first.service.signal(signal.SIGCONT)
    first.wait_component_connected(marks["muc-a"], timeout=60)

    owner = ejabberd_login(h, ej, "u0", resource="again")
    for room in ROOMS:
        join(owner, room, "u0", history=f'<history maxstanzas="{HISTORY}"/>')
        own = own_presence(owner, room, "u0", timeout=20)
        check(201 not in statuses(own), f"{room}, served by {served_by[room]} before, was made anew by the other: {show(own)}")
        owner.expect(lambda s, r=room: kind(s) == "message" and delayed(s) and body(s) == f"{r} before",
                     f"{room}'s history after the slots changed hands", timeout=20)
    moved = find_instances(instances, lambda room: (owner, "u0"), lambda room: f"{room} after")
    check(all(moved[room] != served_by[room] for room in ROOMS),
          f"the slots did not change hands: before {served_by}, after {moved}")
    for room in ROOMS[:3]:
        check(room_name(owner, room) == f"Room {room.split('@')[0]}", f"{room} lost its name")
    conftest_report.add("cluster: ejabberd restarted and the slots swapped between live instances: "
                        "every room served by the other instance with its configuration and history")
