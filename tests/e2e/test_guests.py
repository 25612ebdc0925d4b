"""Guests on the bundled server (`muc-host serve --guest-domain`): slixmpp without an account
(a JID that is only a domain) logs in with SASL ANONYMOUS inside STARTTLS, as a fresh JID at the
guest domain; it enters a public room an account made and talks with it, is refused in a hidden
one, and once it leaves, a message to its JID bounces."""

from flows import check, expect_groupchat, groupchat, join, own_presence, submit_config
from harness import DOMAIN, MUC_DOMAIN, error_condition, is_presence, kind, user_add

GUESTS = f"guest.{DOMAIN}"
OWNER_PASSWORD = "owner-Secret1"


def test_a_slixmpp_guest_visits_a_public_room_and_leaves_nothing(h):
    data = h.data_dir()
    user_add(data, f"owner@{DOMAIN}", OWNER_PASSWORD)
    server = h.bundled(data, "--guest-domain", GUESTS)
    owner = h.client(f"owner@{DOMAIN}/desk", OWNER_PASSWORD, server.port, name="owner").connect()
    square, backroom = f"square@{MUC_DOMAIN}", f"backroom@{MUC_DOMAIN}"
    for room, public in [(square, "1"), (backroom, "0")]:
        join(owner, room, "owner")
        own_presence(owner, room, "owner")
        submit_config(owner, room, {"muc#roomconfig_publicroom": public})

    guest = h.client(GUESTS, "", server.port, name="guest").connect()
    check(guest.tls, f"guest: logged in without STARTTLS (events {guest.events})")
    check(guest.mechanism == "ANONYMOUS",
          f"guest: negotiated {guest.mechanism!r} (offered: {sorted(guest.offered_mechanisms)})")
    localpart, _, rest = guest.full_jid.partition("@")
    check(len(localpart) == 32 and rest.startswith(f"{GUESTS}/"),
          f"guest: bound {guest.full_jid!r}, expected a random JID at {GUESTS}")

    join(guest, square, "visitor")
    own_presence(guest, square, "visitor")
    groupchat(guest, square, "hello from a guest", guest.next_id())
    expect_groupchat(owner, square, "visitor", "hello from a guest")
    groupchat(owner, square, "welcome", owner.next_id())
    expect_groupchat(guest, square, "owner", "welcome")

    join(guest, backroom, "visitor")
    refused = guest.expect(lambda s: is_presence(s, f"{backroom}/visitor", "error"),
                           "the hidden room's refusal")
    check(error_condition(refused) == "not-allowed", f"guest: hidden room answered {error_condition(refused)}")

    gone = guest.full_jid
    guest.close()
    owner.expect(lambda s: is_presence(s, f"{square}/visitor", "unavailable"),
                 "the guest leaving the room")
    message_id = owner.next_id("late")
    owner.send(f'<message type="chat" to="{gone}" id="{message_id}"><body>still there?</body></message>')
    bounced = owner.expect(lambda s: kind(s) == "message" and s.get("id") == message_id,
                           "the bounce from the gone guest")
    check(bounced.get("type") == "error" and error_condition(bounced) == "service-unavailable",
          f"a message to a gone guest: type {bounced.get('type')!r}, {error_condition(bounced)!r}")
