"""link-guard: newcomers may not post many links at once.

A groupchat message with more than `max-links` links (default 2) from a participant who joined
less than `newcomer-minutes` minutes ago (default 5) is refused with a `reject` verdict, and the
refusal is logged. Moderators, owners and admins are exempt. A link is anything starting with
`http://`, `https://` or `www.`, up to the next space.

Join times (milliseconds since the epoch, as decimal text) are kept in the store under
`joined/<occupant id>` (the id stays with a person through nickname changes, so a newcomer
cannot shed the limit by renaming): written in `on-joined`, deleted in `on-left`, and pruned
every minute by `on-tick` once they are older than the newcomer window. Someone without an
entry (pruned, or in the room before the extension was switched on) is no newcomer.

A `componentize-py` module for the `room-extension` world of wit/extension (built by
scripts/build-python-extensions): the hooks are the methods of the class `Hooks`.
"""

import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.hooks import (
    JoinVerdict_Allow,
    Manifest,
    MessageVerdict_Pass,
    MessageVerdict_Reject,
)
from wit_world.imports import clock, log, room, store
from wit_world.imports.model import Affiliation, Role, Setting, SettingKind

DEFAULT_MAX_LINKS = 2
DEFAULT_MINUTES = 5
LINK = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
PREFIX = "joined/"


def count_links(body):
    return len(LINK.findall(body))


def whole_number(values, default):
    """A setting's value (the host checked it is an integer) floored at 0."""
    text = values[0].strip() if values else ""
    try:
        return max(int(text), 0)
    except ValueError:
        return default


def plural(count, word):
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def exempt(occupant):
    return occupant.role == Role.MODERATOR or occupant.affiliation in (
        Affiliation.OWNER,
        Affiliation.ADMIN,
    )


def joined_at(occupant_id):
    value = store.get(PREFIX + occupant_id)
    try:
        return int(value.decode()) if value is not None else None
    except ValueError:
        return None


def remember_join(occupant):
    try:
        store.put(PREFIX + occupant.id, str(clock.now()).encode())
    except Err as refused:
        # The quota is full (a crowd of newcomers): this one goes unguarded rather than the
        # call failing.
        log.write(log.Level.WARN, f"cannot remember when {occupant.nick!r} joined: {refused.value}")


class Hooks(exports.Hooks):
    def describe(self):
        return Manifest(
            name="link-guard",
            version="1.0.0",
            description="Refuses messages with many links from participants who just joined",
            nick=None,
            command=None,
            settings=[
                Setting(
                    name="max-links",
                    label="Links a newcomer's message may hold",
                    kind=SettingKind.INTEGER,
                    default=[str(DEFAULT_MAX_LINKS)],
                    options=[],
                ),
                Setting(
                    name="newcomer-minutes",
                    label="Minutes after joining during which the limit applies (0: never)",
                    kind=SettingKind.INTEGER,
                    default=[str(DEFAULT_MINUTES)],
                    options=[],
                ),
            ],
            tick_seconds=60,
            capabilities=[],
        )

    def on_message(self, sender, body):
        if exempt(sender):
            return MessageVerdict_Pass()
        max_links = whole_number(room.setting("max-links"), DEFAULT_MAX_LINKS)
        links = count_links(body)
        if links <= max_links:
            return MessageVerdict_Pass()
        minutes = whole_number(room.setting("newcomer-minutes"), DEFAULT_MINUTES)
        since = joined_at(sender.id)
        if since is None:
            return MessageVerdict_Pass()
        age_ms = clock.now() - since
        if age_ms >= minutes * 60_000:
            return MessageVerdict_Pass()
        log.write(
            log.Level.INFO,
            f"refused a message with {plural(links, 'link')} from {sender.nick!r}, "
            f"who joined {age_ms // 1000} s ago",
        )
        return MessageVerdict_Reject(
            f"Too many links: in their first {plural(minutes, 'minute')} in this room, "
            f"newcomers may post at most {plural(max_links, 'link')} per message"
        )

    def on_join(self, joiner):
        return JoinVerdict_Allow()

    def on_joined(self, occupant):
        remember_join(occupant)

    def on_left(self, occupant):
        store.delete(PREFIX + occupant.id)

    def on_command(self, sender, arguments):
        pass

    def on_tick(self):
        window_ms = whole_number(room.setting("newcomer-minutes"), DEFAULT_MINUTES) * 60_000
        now = clock.now()
        for key in store.keys(PREFIX):
            since = joined_at(key[len(PREFIX):])
            if since is None or now - since >= window_ms:
                store.delete(key)
                log.write(log.Level.DEBUG, f"forgot a join time of {(now - since) // 1000} s ago")
