"""Moderated retraction (XEP-0425 0.3) as a client lives it: a spammer's message, moderated away
by the room's owner, is gone from a later joiner's history and from a MAM query (slixmpp's own
`xep_0313`), leaving a tombstone (XEP-0424 `<retracted/>`) in its place; through the bundled
listener and through Prosody with muc-host as its component."""

import xml.etree.ElementTree as ET

import conftest_report
from flows import check, join, own_presence, room_features, submit_config
from harness import DOMAIN, MUC_DOMAIN, Client, delayed, kind, show, start_component

SID = "urn:xmpp:sid:0"
MODERATE = "urn:xmpp:message-moderate:1"
RETRACT = "urn:xmpp:message-retract:1"
SPAM = "Cheap pills at spam.example"


def stanza_id(message: ET.Element, room: str) -> str | None:
    for sid in message.findall(f"{{{SID}}}stanza-id"):
        if sid.get("by") == room:
            return sid.get("id")
    return None


def body_of(message: ET.Element) -> str | None:
    return message.findtext("{jabber:client}body")


def moderate_spam(login, room: str, via: str) -> str:
    """The owner makes the room, the spammer spams, the owner retracts it: the spam's stanza-id."""
    owner = login("owner")
    join(owner, room, "Owner")
    own_presence(owner, room, "Owner")
    submit_config(owner, room, {})
    features = room_features(owner, room)
    check({MODERATE, RETRACT} <= features, f"{via}: the room does not advertise moderation: {features}")

    spammer = login("spammer")
    join(spammer, room, "Spammer")
    own_presence(spammer, room, "Spammer")
    spammer.send(f'<message type="groupchat" to="{room}" id="spam-1"><body>{SPAM}</body></message>')
    echo = owner.expect(lambda s: kind(s) == "message" and s.get("id") == "spam-1", "the spam", 10)
    spam_id = stanza_id(echo, room)
    check(spam_id is not None, f"{via}: the spam carries no stanza-id from the room: {show(echo)}")
    owner.send(f'<message type="groupchat" to="{room}" id="fine-1"><body>Welcome</body></message>')
    owner.expect(lambda s: kind(s) == "message" and s.get("id") == "fine-1", "the owner's echo", 10)

    owner.iq_ok(f'<iq type="set" id="mod-1" to="{room}"><moderate xmlns="{MODERATE}" id="{spam_id}">'
                f'<retract xmlns="{RETRACT}"/><reason>Spam</reason></moderate></iq>')
    announced = spammer.expect(
        lambda s: kind(s) == "message" and s.get("from") == room
        and s.find(f"{{{RETRACT}}}retract") is not None, "the moderation announcement", 10)
    retract = announced.find(f"{{{RETRACT}}}retract")
    moderated = retract.find(f"{{{MODERATE}}}moderated")
    check(retract.get("id") == spam_id and moderated is not None
          and moderated.get("by") == f"{room}/Owner"
          and retract.findtext(f"{{{RETRACT}}}reason") == "Spam",
          f"{via}: the announcement does not name the spam, the moderator and the reason: {show(announced)}")
    return spam_id


def is_tombstone(message: ET.Element, room: str, spam_id: str) -> bool:
    retracted = message.find(f"{{{RETRACT}}}retracted")
    return (stanza_id(message, room) == spam_id and body_of(message) is None
            and retracted is not None and retracted.find(f"{{{MODERATE}}}moderated") is not None)


def check_history(late: Client, room: str, spam_id: str, via: str) -> None:
    join(late, room, "Late")
    own_presence(late, room, "Late")
    late.expect(lambda s: kind(s) == "message" and s.find("{jabber:client}subject") is not None,
                "the subject after the history", 10)
    history = late.take_all(lambda s: kind(s) == "message" and delayed(s))
    bodies = [body_of(m) for m in history]
    check(SPAM not in bodies and "Welcome" in bodies,
          f"{via}: the history shows {bodies}, not the welcome without the spam")
    check(any(is_tombstone(m, room, spam_id) for m in history),
          f"{via}: no tombstone for the spam in the history: {[show(m) for m in history]}")


def check_mam(late: Client, room: str, spam_id: str, via: str) -> None:
    from slixmpp import JID
    late.harness.loop.call(late.xmpp.register_plugin, "xep_0313")
    mam = late.xmpp.plugin["xep_0313"]

    async def run():
        got = []
        async for message in mam.iterate(jid=JID(room), rsm={"max": 50}):
            result = message["mam_result"]
            got.append((result["id"], ET.fromstring(str(result["forwarded"]["stanza"]))))
        return got
    archived = late.harness.loop.run(run(), 60)
    bodies = [body_of(m) for _, m in archived]
    check(SPAM not in bodies and "Welcome" in bodies,
          f"{via}: MAM shows {bodies}, not the welcome without the spam")
    in_place = [m for rid, m in archived if rid == spam_id]
    check(len(in_place) == 1 and is_tombstone(in_place[0], room, spam_id),
          f"{via}: MAM has no tombstone under the spam's id: {[show(m) for m in in_place]}")
    retractions = [m for _, m in archived if m.find(f"{{{RETRACT}}}retract") is not None]
    check(len(retractions) == 1, f"{via}: MAM holds {len(retractions)} retractions, not the one")


def run_flow(login, via: str) -> None:
    room = f"spamfree@{MUC_DOMAIN}"
    spam_id = moderate_spam(login, room, via)
    late = login("late")
    check_history(late, room, spam_id, via)
    check_mam(late, room, spam_id, via)
    conftest_report.add(f"Moderation {via}: a spam message moderated away (XEP-0425) is a tombstone "
                        "in a later joiner's history and in MAM (slixmpp)")


def test_moderation_through_the_bundled_listener(h):
    server = h.bundled(h.data_dir(), "--insecure-auth")

    def login(user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/mod", "any password", server.port, plaintext_ok=True,
                        name=user).connect()
    run_flow(login, "bundled")


def test_moderation_through_prosody(h):
    prosody = h.prosody("component").start()
    start_component(h, h.data_dir(), prosody.component_port, prosody.secret)

    def login(user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/mod", "any password", prosody.c2s_port, plaintext_ok=True,
                        name=user).connect()
    run_flow(login, "through Prosody")
