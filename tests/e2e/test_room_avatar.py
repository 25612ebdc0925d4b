"""Room avatars (XEP-0486) through the bundled listener, as a client sees them: after an owner
sets a photo on the room's vCard, the room's disco#info carries its SHA-1 in
`muc#roominfo_avatarhash`; a new photo changes the hash (occupants hear of each change with status
104), the hash survives a restart, and an empty vCard removes it."""

import base64
import hashlib

from flows import check, join, own_presence, submit_config
from harness import DOMAIN, MUC_DOMAIN, Client, kind, show

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DATA = "jabber:x:data"
MUC_USER = "http://jabber.org/protocol/muc#user"
VCARD = "vcard-temp"
HASH_FIELD = "muc#roominfo_avatarhash"

# XEP-0486's two example images: a red square as SVG, and as PNG.
SVG = ("PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIzMiIgaGVpZ2h0PSIzMiI+CiA8cmVj"
       "dCB4PSIwIiB5PSIwIiB3aWR0aD0iMzIiIGhlaWdodD0iMzIiIGZpbGw9InJlZCIvPgo8L3N2Zz4K")
PNG = ("iVBORw0KGgoAAAANSUhEUgAAACAAAAAgAQMAAABJtOi3AAAAB3RJTUUH4ggVERoVAPsrMgAAAAlwSFlzAAALEgAACxIB0t1+"
       "/AAAABl0RVh0U29mdHdhcmUAd3d3Lmlua3NjYXBlLm9yZ5vuPBoAAAAEZ0FNQQAAsY8L/GEFAAAAIGNIUk0AAHomAACAhAAA"
       "+gAAAIDoAAB1MAAA6mAAADqYAAAXcJy6UTwAAAAGUExURf8AAP///0EdNBEAAAABYktHRAH/Ai3eAAAADElEQVQI12NgGNwA"
       "AACgAAFhJX1HAAAAAElFTkSuQmCC")


def sha1_of(b64: str) -> str:
    return hashlib.sha1(base64.b64decode(b64)).hexdigest()


def avatar_hashes(client: Client, room: str) -> list[str]:
    """The values of `muc#roominfo_avatarhash` in the room's disco#info (none: no field)."""
    answer = client.iq_ok(f'<iq type="get" id="{client.next_id("disco")}" to="{room}">'
                          f'<query xmlns="{DISCO_INFO}"/></iq>')
    values = []
    for form in answer.iter(f"{{{DATA}}}x"):
        for field in form.findall(f"{{{DATA}}}field"):
            if field.get("var") == HASH_FIELD:
                values += [v.text or "" for v in field.findall(f"{{{DATA}}}value")]
    return values


def set_vcard(owner: Client, room: str, photo: tuple[str, str] | None) -> None:
    inner = "" if photo is None else (f"<PHOTO><TYPE>{photo[0]}</TYPE><BINVAL>{photo[1]}</BINVAL></PHOTO>")
    owner.iq_ok(f'<iq type="set" id="{owner.next_id("vcard")}" to="{room}">'
                f'<vCard xmlns="{VCARD}">{inner}</vCard></iq>')


def expect_change_notice(client: Client, room: str) -> None:
    client.expect(lambda s: kind(s) == "message" and s.get("from") == room
                  and any(st.get("code") == "104" for st in s.iter(f"{{{MUC_USER}}}status")),
                  f"the 104 notice from {room}")


def test_the_avatar_hash_follows_the_owners_photo(h):
    data = h.data_dir()
    server = h.bundled(data, "--insecure-auth")

    def login(port: int, user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/avatar", "any password", port, plaintext_ok=True,
                        name=user).connect()

    room = f"gallery@{MUC_DOMAIN}"
    owner = login(server.port, "owner")
    join(owner, room, "owner")
    own_presence(owner, room, "owner")
    submit_config(owner, room, {"muc#roomconfig_persistentroom": "1"})
    watcher = login(server.port, "watcher")
    join(watcher, room, "watcher")
    own_presence(watcher, room, "watcher")
    check(avatar_hashes(watcher, room) == [], "a room without a photo advertises an avatar hash")

    set_vcard(owner, room, ("image/svg+xml", SVG))
    expect_change_notice(watcher, room)
    first = avatar_hashes(watcher, room)
    check(first == [sha1_of(SVG)], f"after the first photo the hash is {first}, not [{sha1_of(SVG)}]")

    set_vcard(owner, room, ("image/png", PNG))
    expect_change_notice(watcher, room)
    second = avatar_hashes(watcher, room)
    check(second == [sha1_of(PNG)] and second != first,
          f"after a new photo the hash is {second} (was {first}), not [{sha1_of(PNG)}]")

    # Kept with the persistent room: the same hash, and the same photo, after a restart.
    server.terminate()
    server = h.bundled(data, "--insecure-auth", name="muc-host-restarted")
    reader = login(server.port, "reader")
    check(avatar_hashes(reader, room) == second, "the avatar hash did not survive the restart")
    answer = reader.iq_ok(f'<iq type="get" id="{reader.next_id("vcard")}" to="{room}"><vCard xmlns="{VCARD}"/></iq>')
    binval = answer.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL") or ""
    check(sha1_of(binval) == second[0], f"the vCard read back does not hash to the advertised hash: {show(answer)}")

    owner = login(server.port, "owner")
    set_vcard(owner, room, None)
    check(avatar_hashes(reader, room) == [], "an empty vCard left an avatar hash in disco#info")
