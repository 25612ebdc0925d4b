"""IQs to occupants through the room (XEP-0045's business rules): in a semi-anonymous room, one
participant fetches another's vCard (XEP-0054, the XEP-0153 avatar with it) and asks the other's
client its software version, through Prosody with muc-host as its component and through the
bundled listener; no stanza either client receives holds the other's real JID."""

import xml.etree.ElementTree as ET

import conftest_report
from flows import check, join, own_presence, submit_config
from harness import DOMAIN, MUC_DOMAIN, Client, show, start_component

VCARD = "vcard-temp"
# A 1x1 PNG: the avatar XEP-0153 keeps in the vCard's PHOTO.
PHOTO = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def room_of_two(owner: Client, alice: Client, bob: Client, room: str) -> None:
    """The owner makes an instant room (semi-anonymous: real JIDs for moderators only); alice
    and bob enter as participants."""
    join(owner, room, "owner")
    own_presence(owner, room, "owner")
    submit_config(owner, room, {})
    for client, nick in [(alice, "alice"), (bob, "bob")]:
        join(client, room, nick)
        presence = own_presence(client, room, nick)
        item = presence.find("{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}item")
        check(item is not None and item.get("role") == "participant",
              f"{nick} should be a participant: {show(presence)}")


def ask_version(asker: Client, room: str, nick: str) -> ET.Element:
    """Asks the client under `nick` its software version through the room: whatever that client
    answers comes back from the occupant JID asked, with the asker's id."""
    iq_id = asker.next_id("version")
    answer = asker.iq(f'<iq type="get" id="{iq_id}" to="{room}/{nick}"><query xmlns="jabber:iq:version"/></iq>')
    check(answer.get("from") == f"{room}/{nick}",
          f"the answer to {iq_id} does not come from {room}/{nick}: {show(answer)}")
    return answer


def ask_vcard(asker: Client, room: str, nick: str) -> ET.Element:
    iq_id = asker.next_id("vcard")
    answer = asker.iq(f'<iq type="get" id="{iq_id}" to="{room}/{nick}"><vCard xmlns="{VCARD}"/></iq>')
    check(answer.get("from") == f"{room}/{nick}",
          f"the answer to {iq_id} does not come from {room}/{nick}: {show(answer)}")
    return answer


def never_shown(client: Client, other: Client) -> None:
    """No stanza `client` received holds `other`'s real JID, bare or full."""
    real = other.jid.split("/")[0]
    with client.cond:
        received = list(client.received)
    for stanza in received:
        text = ET.tostring(stanza, encoding="unicode")
        check(real not in text, f"{client.name} received {other.name}'s real JID {real}: {show(stanza)}")


def versions_both_ways(alice: Client, bob: Client, room: str) -> None:
    # slixmpp answers from the client (a result, or an error for what it does not do): either
    # way the answer crosses the room.
    for asker, nick in [(alice, "bob"), (bob, "alice")]:
        answer = ask_version(asker, room, nick)
        check(answer.get("type") in ("result", "error"), f"not an answer: {show(answer)}")


def test_vcard_through_prosody(h):
    prosody = h.prosody("component").start()
    start_component(h, h.data_dir(), prosody.component_port, prosody.secret)

    def login(user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/faces", "any password", prosody.c2s_port, plaintext_ok=True,
                        name=user).connect()
    owner, alice, bob = login("owner"), login("alice"), login("bob")
    # Bob's vCard, with his avatar, kept by his server (Prosody's mod_vcard).
    bob.iq_ok(f'<iq type="set" id="my-vcard"><vCard xmlns="{VCARD}"><FN>Bob Example</FN>'
              f'<PHOTO><TYPE>image/png</TYPE><BINVAL>{PHOTO}</BINVAL></PHOTO></vCard></iq>')
    room = f"faces@{MUC_DOMAIN}"
    room_of_two(owner, alice, bob, room)

    card = ask_vcard(alice, room, "bob")
    check(card.get("type") == "result", f"alice did not get bob's vCard: {show(card)}")
    check(card.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}FN") == "Bob Example"
          and card.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL") == PHOTO,
          f"the vCard alice got is not bob's: {show(card)}")
    versions_both_ways(alice, bob, room)
    never_shown(alice, bob)
    never_shown(bob, alice)
    conftest_report.add("IQs to occupants through Prosody: a participant fetched another's vCard "
                        "(with its photo) and both clients' versions crossed the room, neither real JID "
                        "in any stanza either received")


def test_iqs_to_occupants_through_the_bundled_listener(h):
    server = h.bundled(h.data_dir(), "--insecure-auth")

    def login(user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/faces", "any password", server.port, plaintext_ok=True,
                        name=user).connect()
    owner, alice, bob = login("owner"), login("alice"), login("bob")
    room = f"faces@{MUC_DOMAIN}"
    room_of_two(owner, alice, bob, room)
    # The bundled server keeps no vCards: it answers for bob's account, and the room relays it.
    card = ask_vcard(alice, room, "bob")
    check(card.get("type") == "error"
          and card.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None,
          f"the bundled server should answer service-unavailable for bob's vCard: {show(card)}")
    versions_both_ways(alice, bob, room)
    never_shown(alice, bob)
    never_shown(bob, alice)
