"""Several instances behind one ejabberd: the MUC domain balanced over component connections by
room (`domain_balancing`, `type: bare_destination`, `component_number: 2`).

First what ejabberd 23.01 itself does with the slots (plain slixmpp components, no muc-host), then
two `muc-host serve` instances as the two connections, with clients in 20 rooms, one instance
killed with -9 under traffic and restarted.
"""

from __future__ import annotations

import threading
import time

import conftest_report
from ejabberd import ejabberd_login, start_ejabberd
from harness import LOGIN_TIMEOUT, MUC_DOMAIN, E2EFailure, kind, show, wait_until

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
