"""Conversations shared by the tests: the seed flow (SEED.md) and its pieces, written against
XEP-0045 and independent of how the clients reached the MUC (bundled listener or Prosody)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import xml.etree.ElementTree as ET

from harness import (DATA, MUC, MUC_ADMIN, MUC_DOMAIN, MUC_OWNER, ROOMCONFIG, Client, E2EFailure, body,
                     child, delayed, error_condition, form_fields, is_presence, kind, muc_item, show,
                     statuses, subject, submit_form, text)

DISCO_INFO = "http://jabber.org/protocol/disco#info"


def check(cond: bool, message: str) -> None:
    if not cond:
        raise E2EFailure(message)


def join(client: Client, room: str, nick: str, history: Optional[str] = None,
         presence_id: Optional[str] = None) -> None:
    """Sends a MUC join (the seed's first stanza)."""
    extra = history or ""
    pid = f' id="{presence_id}"' if presence_id else ""
    client.send(f'<presence{pid} to="{room}/{nick}"><x xmlns="{MUC}">{extra}</x></presence>')


def own_presence(client: Client, room: str, nick: str, timeout: float = 10) -> ET.Element:
    return client.expect(lambda s: is_presence(s, f"{room}/{nick}") and 110 in statuses(s),
                         f"self-presence (status 110) from {room}/{nick}", timeout)


def groupchat(client: Client, room: str, message: str, msg_id: str) -> None:
    client.send(f'<message type="groupchat" to="{room}" id="{msg_id}"><body>{text(message)}</body></message>')


def expect_groupchat(client: Client, room: str, nick: str, message: str, timeout: float = 10):
    return client.expect(lambda s: kind(s) == "message" and s.get("type") == "groupchat"
                         and s.get("from") == f"{room}/{nick}" and body(s) == message and not delayed(s),
                         f"groupchat {message!r} from {room}/{nick}", timeout)


def history_bodies(client: Client, room: str, nick: str, max_stanzas: int = 1000) -> list[str]:
    """Joins `room` as `nick` asking for up to `max_stanzas` of history: the bodies of the history
    messages, oldest first (the history ends where the subject arrives, XEP-0045 §7.2.15-16)."""
    join(client, room, nick, history=f'<history maxstanzas="{max_stanzas}"/>')
    own_presence(client, room, nick)
    client.expect(lambda s: kind(s) == "message" and subject(s) is not None and body(s) is None,
                  "the subject after the history", timeout=20)
    return [body(s) for s in client.received
            if kind(s) == "message" and delayed(s) and body(s) is not None]


def get_config_form(owner: Client, room: str):
    iq_id = owner.next_id("config-get")
    answer = owner.iq_ok(f'<iq type="get" id="{iq_id}" to="{room}"><query xmlns="{MUC_OWNER}"/></iq>')
    query = child(answer, "query", MUC_OWNER)
    check(query is not None, f"the config form answer has no muc#owner query: {show(answer)}")
    form = child(query, "x", DATA)
    check(form is not None and form.get("type") == "form",
          f"the muc#owner answer holds no data form of type 'form': {show(answer)}")
    fields = form_fields(form)
    check(fields.get("FORM_TYPE") == [ROOMCONFIG],
          f"the form's FORM_TYPE is {fields.get('FORM_TYPE')}, not {ROOMCONFIG}: {show(answer)}")
    return fields


def submit_config(owner: Client, room: str, values: dict) -> None:
    iq_id = owner.next_id("config-set")
    owner.iq_ok(f'<iq type="set" id="{iq_id}" to="{room}"><query xmlns="{MUC_OWNER}">'
                f'{submit_form(values)}</query></iq>')


def set_affiliation(owner: Client, room: str, jid: str, affiliation: str) -> None:
    iq_id = owner.next_id("affiliation")
    owner.iq_ok(f'<iq type="set" id="{iq_id}" to="{room}"><query xmlns="{MUC_ADMIN}">'
                f'<item affiliation="{affiliation}" jid="{jid}"/></query></iq>')


def affiliation_list(owner: Client, room: str, affiliation: str) -> set[str]:
    iq_id = owner.next_id("affiliations")
    answer = owner.iq_ok(f'<iq type="get" id="{iq_id}" to="{room}"><query xmlns="{MUC_ADMIN}">'
                         f'<item affiliation="{affiliation}"/></query></iq>')
    query = child(answer, "query", MUC_ADMIN)
    check(query is not None, f"no muc#admin query in {show(answer)}")
    return {item.get("jid") for item in query.findall(f"{{{MUC_ADMIN}}}item")}


def room_name(client: Client, room: str) -> Optional[str]:
    iq_id = client.next_id("disco")
    answer = client.iq_ok(f'<iq type="get" id="{iq_id}" to="{room}"><query xmlns="{DISCO_INFO}"/></iq>')
    query = child(answer, "query", DISCO_INFO)
    identity = None if query is None else query.find(f"{{{DISCO_INFO}}}identity")
    return None if identity is None else identity.get("name")


def room_features(client: Client, room: str) -> set[str]:
    iq_id = client.next_id("disco")
    answer = client.iq_ok(f'<iq type="get" id="{iq_id}" to="{room}"><query xmlns="{DISCO_INFO}"/></iq>')
    query = child(answer, "query", DISCO_INFO)
    return set() if query is None else {f.get("var") for f in query.findall(f"{{{DISCO_INFO}}}feature")}


@dataclass
class Joined:
    """What a joiner received (its arrival order checked by expect_join)."""
    own: object
    others: list = field(default_factory=list)
    history: list = field(default_factory=list)
    subject: object = None


def expect_join(client: Client, room: str, nick: str, others: list[str], history_bodies: list[str],
                subject_text: Optional[str], timeout: float = 10) -> Joined:
    """Checks a join's delivery in XEP-0045 order (§7.2.2-7.2.16): the presence of every occupant
    already there, the joiner's own presence (110), the history (delayed, oldest first), then the
    subject."""
    got = Joined(own=None)
    for other in others:
        got.others.append(client.expect(lambda s, o=other: is_presence(s, f"{room}/{o}"),
                                        f"the presence of occupant {other!r} on joining {room}", timeout))
    got.own = own_presence(client, room, nick, timeout)
    for b in history_bodies:
        got.history.append(client.expect(lambda s, b=b: kind(s) == "message" and body(s) == b and delayed(s),
                                         f"history message {b!r} (with urn:xmpp:delay) on joining {room}",
                                         timeout))
    if subject_text is not None:
        got.subject = client.expect(lambda s: kind(s) == "message" and subject(s) == subject_text
                                    and body(s) is None,
                                    f"the subject {subject_text!r} on joining {room}", timeout)
    # The order.
    own_at = client.position(got.own)
    for p in got.others:
        check(client.position(p) < own_at,
              f"{client.name}: an occupant's presence came after the joiner's own presence:\n"
              f"  {show(p)}\n  own: {show(got.own)}")
    positions = [client.position(m) for m in got.history]
    check(positions == sorted(positions),
          f"{client.name}: history out of order: " + "; ".join(show(m) for m in got.history))
    if positions:
        check(positions[0] > own_at, f"{client.name}: history came before the joiner's own presence")
    if got.subject is not None:
        subject_at = client.position(got.subject)
        check(subject_at > own_at and all(p < subject_at for p in positions),
              f"{client.name}: the subject did not come after presence and history "
              f"(XEP-0045 §7.2.15-16): subject at {subject_at}, own presence at {own_at}, "
              f"history at {positions}")
    return got


@dataclass
class Seeded:
    room: str
    owner: Client
    second: Client
    third: Client
    messages: list[str]
    subject: str
    name: str


def seed_flow(login: Callable[[str], Client], room_local: str = "seedroom",
              users=("alice", "bob", "carol")) -> Seeded:
    """SEED.md end to end: create (201, 110), fetch the form, submit it (name, persistent), the
    room unlocks; a second user joins and they exchange messages; a third gets history and
    subject. `login(user)` returns a connected client for `user@localhost`."""
    room = f"{room_local}@{MUC_DOMAIN}"
    owner_nick, second_nick, third_nick = "clientA", "clientB", "clientC"
    owner = login(users[0])

    # 1-2. Joining a room that does not exist creates it, locked, with the joiner as owner.
    join(owner, room, owner_nick, presence_id="8Li34-12")
    created = own_presence(owner, room, owner_nick)
    check({201, 110} <= statuses(created),
          f"the creator's presence lacks status 201 and 110 (XEP-0045 §10.1.1): {show(created)}")
    item = muc_item(created)
    check(item.get("affiliation") == "owner" and item.get("role") == "moderator",
          f"the creator is not owner and moderator: {show(created)}")
    check(item.get("jid") == owner.full_jid,
          f"the creator's item jid is {item.get('jid')!r}, expected its full JID {owner.full_jid!r}: "
          f"{show(created)}")
    check(created.get("id") == "8Li34-12",
          f"the creator's self-presence does not carry the join's id 8Li34-12: {show(created)}")

    # Locked: to anybody else the room does not exist yet.
    second = login(users[1])
    join(second, room, second_nick)
    refused = second.expect(lambda s: is_presence(s, f"{room}/{second_nick}", "error"),
                            f"an error presence for joining the locked room {room}")
    check(error_condition(refused) == "item-not-found",
          f"joining a locked room: expected item-not-found (XEP-0045 §10.1.1): {show(refused)}")

    # 3. The configuration form.
    fields = get_config_form(owner, room)
    for var in ["muc#roomconfig_roomname", "muc#roomconfig_persistentroom"]:
        check(var in fields, f"the configuration form lacks {var}; it has {sorted(fields)}")

    # 4. Submitting it unlocks the room.
    name = "The Seed Room"
    submit_config(owner, room, {"muc#roomconfig_roomname": name, "muc#roomconfig_persistentroom": "1"})

    topic = "Growing things"
    owner.send(f'<message type="groupchat" to="{room}" id="{owner.next_id("subject")}">'
               f'<subject>{topic}</subject></message>')
    owner.expect(lambda s: kind(s) == "message" and s.get("from") == f"{room}/{owner_nick}"
                 and subject(s) == topic, "the subject change reflected to its author")

    join(second, room, second_nick)
    expect_join(second, room, second_nick, [owner_nick], [], topic)
    owner.expect(lambda s: is_presence(s, f"{room}/{second_nick}"), f"{second_nick}'s arrival")
    check(room_name(second, room) == name, f"the room's disco#info identity is not named {name!r}")

    # Both receive each other's messages, the sender its own with its id.
    m1, m2 = "Hello from A", "Hello from B & co <3"
    groupchat(owner, room, m1, "m1")
    echo = expect_groupchat(owner, room, owner_nick, m1)
    check(echo.get("id") == "m1", f"the reflected message lost its id m1: {show(echo)}")
    expect_groupchat(second, room, owner_nick, m1)
    groupchat(second, room, m2, "m2")
    expect_groupchat(second, room, second_nick, m2)
    expect_groupchat(owner, room, second_nick, m2)

    # A third user: the occupants, itself, the history, the subject.
    third = login(users[2])
    join(third, room, third_nick)
    joined = expect_join(third, room, third_nick, [owner_nick, second_nick], [m1, m2], topic)
    for message, nick in zip(joined.history, [owner_nick, second_nick]):
        check(message.get("from") == f"{room}/{nick}" and message.get("type") == "groupchat",
              f"a history message should come from {room}/{nick} as groupchat: {show(message)}")
        stamp = child(message, "delay", "urn:xmpp:delay")
        check(stamp.get("from") == room, f"history delay should be from the room {room}: {show(message)}")
    owner.expect(lambda s: is_presence(s, f"{room}/{third_nick}"), f"{third_nick}'s arrival")
    second.expect(lambda s: is_presence(s, f"{room}/{third_nick}"), f"{third_nick}'s arrival")
    return Seeded(room=room, owner=owner, second=second, third=third, messages=[m1, m2],
                  subject=topic, name=name)


def room_survives_restart(login: Callable[[str], Client], seeded: Seeded) -> list[str]:
    """After the server in front of the MUC restarted: the owner comes back (still owner, no new
    room), talks, and a newcomer gets the room's name, all of its history and the subject.
    Returns the occupants the newcomer sees (ghosts of sessions that died with the server may
    linger: callers record them, not require their absence)."""
    room = seeded.room
    owner = login("alice")
    join(owner, room, "clientA")
    back = own_presence(owner, room, "clientA")
    check(201 not in statuses(back), f"the room was created anew after the reconnection: {show(back)}")
    check(muc_item(back).get("affiliation") == "owner", f"the owner lost its affiliation: {show(back)}")
    groupchat(owner, room, "After the restart", "m3")
    expect_groupchat(owner, room, "clientA", "After the restart")
    dave = login("dave")
    join(dave, room, "clientD")
    expect_join(dave, room, "clientD", ["clientA"], [*seeded.messages, "After the restart"], seeded.subject)
    owner.expect(lambda s: is_presence(s, f"{room}/clientD"), "dave's arrival")
    check(room_name(dave, room) == seeded.name, "the room's name did not survive the restart")
    return sorted({s.get("from").split("/", 1)[1] for s in dave.received
                   if s.tag.endswith("presence") and s.get("type") is None
                   and (s.get("from") or "").startswith(room + "/")})
