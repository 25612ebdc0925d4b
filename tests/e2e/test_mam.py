"""The room archive (XEP-0313) through a stock client library's own MAM support: slixmpp's
`xep_0313` pages a room's archive of 500 messages forward and back, through the bundled listener
and through Prosody with muc-host as its component; a client that joins with `maxstanzas="0"`
(as Monal does) sees no history and catches up through MAM alone."""

import xml.etree.ElementTree as ET

import conftest_report
from flows import check, join, own_presence, submit_config
from harness import DOMAIN, MUC_DOMAIN, Client, delayed, kind, show, start_component

MESSAGES = 500
PAGE = 50
SID = "urn:xmpp:sid:0"
# The room's archive is filled faster than its default per-occupant message rate allows.
NO_FLOOD_LIMITS = ("--room-messages-per-second", "0", "--client-bytes-per-second", "0")


def bundled_login(h, server):
    def login(user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/mam", "any password", server.port, plaintext_ok=True,
                        name=user).connect()
    return login


def stanza_id(message: ET.Element, room: str) -> str | None:
    for sid in message.findall(f"{{{SID}}}stanza-id"):
        if sid.get("by") == room:
            return sid.get("id")
    return None


def fill_room(owner: Client, room: str) -> list[tuple[str, str]]:
    """Creates `room` (an instant room) and says MESSAGES things in it: (stanza-id, body) of
    each, in order, as the live echoes carried them."""
    join(owner, room, "filler")
    own_presence(owner, room, "filler")
    submit_config(owner, room, {})
    bodies = [f"archived message {n}" for n in range(MESSAGES)]
    for n, text in enumerate(bodies):
        owner.send(f'<message type="groupchat" to="{room}" id="fill-{n}"><body>{text}</body></message>')
    last = owner.expect(lambda s: kind(s) == "message" and s.get("id") == f"fill-{MESSAGES - 1}"
                        and s.get("type") == "groupchat", "the echo of the last message", 60)
    echoes = owner.take_all(lambda s: kind(s) == "message" and s.get("type") == "groupchat"
                            and (s.get("id") or "").startswith("fill-")) + [last]
    live = [(stanza_id(e, room), e.findtext("{jabber:client}body")) for e in echoes]
    check([body for _, body in live] == bodies,
          f"the live echoes are not the {MESSAGES} messages in order: {len(live)} echoes")
    check(all(sid for sid, _ in live), "a live echo carries no stanza-id from the room")
    return live


def catch_up(reader: Client, room: str) -> None:
    """Joins with maxstanzas=0: the room sends no history at all."""
    join(reader, room, "latecomer", history='<history maxstanzas="0"/>')
    own_presence(reader, room, "latecomer")
    reader.expect_nothing(lambda s: kind(s) == "message" and delayed(s), "history after maxstanzas=0", 1.5)


def with_mam(client: Client):
    client.harness.loop.call(client.xmpp.register_plugin, "xep_0313")
    return client.xmpp.plugin["xep_0313"]


def page_through(client: Client, room: str, reverse: bool) -> list[tuple[str, str, str]]:
    """Every archived message, through slixmpp's RSM iteration: (result id, body, delay stamp)."""
    from slixmpp import JID
    mam = with_mam(client) if "xep_0313" not in client.xmpp.plugin else client.xmpp.plugin["xep_0313"]

    async def run():
        got = []
        async for message in mam.iterate(jid=JID(room), reverse=reverse, rsm={"max": PAGE}):
            result = message["mam_result"]
            forwarded = result["forwarded"]
            got.append((result["id"], forwarded["stanza"]["body"], str(forwarded["delay"]["stamp"])))
        return got
    return client.harness.loop.run(run(), 120)


def metadata(client: Client, room: str) -> tuple[str, str]:
    from slixmpp import JID
    mam = client.xmpp.plugin["xep_0313"]
    async def ask():
        return await mam.get_archive_metadata(jid=JID(room))
    answer = client.harness.loop.run(ask(), 30)
    meta = answer["mam_metadata"]
    return meta["start"]["id"], meta["end"]["id"]


def check_archive(reader: Client, room: str, live: list[tuple[str, str]], via: str) -> None:
    forward = page_through(reader, room, reverse=False)
    check([(rid, body) for rid, body, _ in forward] == live,
          f"{via}: paging forward gave {len(forward)} messages, not the {MESSAGES} said live with "
          f"their stanza-ids, in order (first differences: "
          f"{[(a, b) for a, b in zip(forward, live) if a[:2] != b][:3]})")
    check(all(stamp for _, _, stamp in forward), f"{via}: a forwarded message has no <delay/>")
    backward = page_through(reader, room, reverse=True)
    check([(rid, body) for rid, body, _ in backward] == list(reversed(live)),
          f"{via}: paging back gave {len(backward)} messages, not the {MESSAGES} newest first")
    first, last = metadata(reader, room)
    check((first, last) == (live[0][0], live[-1][0]),
          f"{via}: the archive's metadata says {first}..{last}, the room said {live[0][0]}..{live[-1][0]}")
    conftest_report.add(f"MAM {via}: slixmpp paged {MESSAGES} archived messages forward and back "
                        f"({PAGE} a page) after joining with maxstanzas=0")


def test_mam_through_the_bundled_listener(h):
    server = h.bundled(h.data_dir(), "--insecure-auth", *NO_FLOOD_LIMITS)
    login = bundled_login(h, server)
    room = f"archive@{MUC_DOMAIN}"
    live = fill_room(login("owner"), room)
    reader = login("reader")
    catch_up(reader, room)
    check_archive(reader, room, live, "bundled")


def test_mam_through_prosody(h):
    prosody = h.prosody("component").start()
    start_component(h, h.data_dir(), prosody.component_port, prosody.secret, *NO_FLOOD_LIMITS)

    def login(user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/mam", "any password", prosody.c2s_port, plaintext_ok=True,
                        name=user).connect()
    room = f"archive@{MUC_DOMAIN}"
    live = fill_room(login("owner"), room)
    reader = login("reader")
    catch_up(reader, room)
    check_archive(reader, room, live, "through Prosody")
    # What a room that says it archives shows a stock client: the feature in disco#info.
    info = reader.iq_ok(f'<iq type="get" id="disco-mam" to="{room}">'
                        '<query xmlns="http://jabber.org/protocol/disco#info"/></iq>')
    features = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
    check("urn:xmpp:mam:2" in features, f"the room does not advertise urn:xmpp:mam:2: {show(info)}")
