"""The stored layout's migration (issue 17, point 4): plugin 0.2.0 (commit 8f2b93b, stored layout
2, built by scripts/build-previous-plugin) keeps each room's join history under
`room/ROOM/history/SEQ`, at most `muc#maxhistoryfetch` entries; the current plugin must take that
data over, through a hot swap under traffic and through a restart, so that each room's archive
(XEP-0313, paged with RSM) holds what the old history held and everything said since: a
contiguous run of the room's messages, in the room's order, with the stanza-ids (XEP-0359) they
carried live, ending with the last one. A rollback to 0.2.0 over the migrated data must be
refused, with the newer plugin serving on.

The traffic is test_hot_swap.py's raw-socket `GroupchatLoad`; who said what when, and with which
stanza-id, is what its occupants received.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import conftest_report
from harness import (CLIENT, DOMAIN, MUC_HOST, MUC_OWNER, Client, E2EFailure, EventLoop, body, child,
                     error_condition, kind, show, submit_form)
from test_hot_swap import (COMPONENTS, PLUGIN, GroupchatLoad, Occupant, RawClient, check, refused,
                           serve, status_version, summary)

PREVIOUS = COMPONENTS / "muc_plugin_0_2_0.wasm"

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
PAGE = 50

ROOMS = 4
OCCUPANTS = 3
RATE = 100.0  # groupchat messages/s over all rooms: 25 a room
HISTORY = 50  # each room's muc#maxhistoryfetch: what plugin 0.2.0 keeps of it
BEFORE = 3.0  # seconds of traffic before the swap: more than HISTORY messages a room
AFTER = 2.0  # and after it
LAST_WORDS = 5  # what one client says in each room after the restart


def require_builds() -> None:
    missing = [p for p in [MUC_HOST, PLUGIN, PREVIOUS] if not p.exists()]
    if missing:
        raise E2EFailure(f"not built: {', '.join(map(str, missing))}: run scripts/build and "
                         "scripts/build-previous-plugin first")


def plugin_version(data: Path, plugin: Path) -> str:
    """The version `muc-host info` reads from `plugin`, which it compiles into `data`'s cache (so
    that the service starts or swaps to it without compiling)."""
    r = subprocess.run([str(MUC_HOST), "--data", str(data), "info", "--plugin", str(plugin)],
                       capture_output=True, text=True, timeout=300)
    m = re.search(r"^version:\s+(\S+)", r.stdout, re.M)
    check(r.returncode == 0 and m is not None, f"muc-host info --plugin {plugin} exited {r.returncode}: "
                                               f"{r.stdout}{r.stderr}")
    return m.group(1)


def keep_history(load: GroupchatLoad) -> None:
    """Each room's creator makes it persistent (its history then lives in the durable tier) with
    HISTORY messages of history."""
    form = submit_form({"muc#roomconfig_persistentroom": "1", "muc#maxhistoryfetch": str(HISTORY)})

    async def configure(owner: Occupant) -> None:
        answer = await owner.client.iq(f"<iq type='set' to='{owner.room}'><query xmlns='{MUC_OWNER}'>"
                                       f"{form}</query></iq>")
        check("type='result'" in answer, f"{owner.room}: the configuration was refused: {answer}")

    async def configure_all() -> None:
        await asyncio.gather(*(configure(o) for o in load.occupants if o.nick == "n0"))
    load.loop.run(configure_all(), 30)


def traffic(load: GroupchatLoad, seconds: float) -> None:
    load.start(RATE)
    time.sleep(seconds)
    load.stop()


def delivered_everywhere(load: GroupchatLoad) -> None:
    """Every message reached every occupant of its room once, in one order for the room."""
    load.drain()
    result = load.result()
    check(not result.problems, "the traffic itself went wrong:\n" + "\n".join(result.problems[:20]))


def room_said(load: GroupchatLoad, room: str) -> list[tuple[str, str]]:
    """(stanza-id, body) of every message said in `room`, in the room's order (the same for every
    occupant: `delivered_everywhere`), as its first occupant received them."""
    witness = next(o.client for o in load.occupants if o.room == room)
    said = [g for g in witness.groupchat if g[0].startswith(room + "/")]
    missing = [text for frm, text in said if (frm, text) not in witness.stanza_ids]
    check(not missing, f"{room}: {len(missing)} live messages carried no stanza-id by the room, "
                       f"e.g. {missing[:3]}")
    return [(witness.stanza_ids[g], g[1]) for g in said]


def archive(reader: Client, room: str, most: int) -> list[tuple[str, str]]:
    """(result id, body) of everything in `room`'s archive, oldest first: MAM queries (XEP-0313)
    paged forward with RSM until the archive says it is complete (a failure past `most`
    results, should the pages never end)."""
    got: list[tuple[str, str]] = []
    after = ""
    while True:
        qid = reader.next_id("mam")
        page = f"<max>{PAGE}</max>" + (f"<after>{after}</after>" if after else "")
        answer = reader.iq(f'<iq type="set" id="{qid}" to="{room}"><query xmlns="{MAM}" queryid="{qid}">'
                           f'<set xmlns="{RSM}">{page}</set></query></iq>')
        check(answer.get("type") == "result",
              f"{room}: the archive query (XEP-0313) was refused ({error_condition(answer)}): {show(answer)}")
        fin = child(answer, "fin", MAM)
        check(fin is not None, f"{room}: the archive query's answer has no <fin/>: {show(answer)}")
        results = [child(m, "result", MAM) for m in reader.take_all(
            lambda s: kind(s) == "message" and child(s, "result", MAM).get("queryid") == qid)]
        for result in results:
            forwarded = child(result, "forwarded", FORWARD)
            message = None if forwarded is None else child(forwarded, "message", CLIENT)
            check(message is not None, f"{room}: a result without a forwarded message: {show(result)}")
            got.append((result.get("id"), body(message)))
        if fin.get("complete") == "true":
            return got
        check(len(got) <= most, f"{room}: the archive's pages go on past {most} results: {show(answer)}")
        last = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last")
        check(bool(results) and last is not None,
              f"{room}: an incomplete page of {len(results)} results without a last id: {show(answer)}")
        after = last


def check_archive(reader, room: str, said: list[tuple[str, str]], first_after: int) -> int:
    """`room`'s archive is `said` from some message on, to its end: nothing lost, duplicated or
    reordered, each with its live stanza-id, starting no later than the HISTORY messages before
    `said[first_after]`, the first said after the takeover (the history 0.2.0 kept then).
    Returns how many messages from before the takeover the archive holds."""
    got = archive(reader, room, len(said))
    check(got, f"{room}: the archive is empty; {len(said)} messages were said")
    texts = [text for _, text in said]
    first = got[0][1]
    check(first in texts, f"{room}: the archive starts with {got[0]}, which nobody said")
    start = texts.index(first)
    want = said[start:]
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise E2EFailure(f"{room}: the archive holds {len(got)} messages, the room said {len(want)} from "
                         f"{first!r} to the end; they part at position {at}: archive "
                         f"{got[max(0, at - 2):at + 3]}, said {want[max(0, at - 2):at + 3]}")
    kept = min(HISTORY, first_after)
    check(start <= first_after - kept,
          f"{room}: the archive starts at message {start} of {len(said)} ({first!r}); the history "
          f"held the {kept} before message {first_after}, the first after the takeover: the "
          f"oldest {start - (first_after - kept)} of them are missing")
    return first_after - start


def first_said_after(said: list[tuple[str, str]], sent_before: dict[str, int]) -> int:
    """Where in `said` the first message is that a sender sent after having sent
    `sent_before[nick]` (bodies are `NICK N`)."""
    for i, (_, text) in enumerate(said):
        nick, n = text.rsplit(" ", 1)
        if int(n) >= sent_before[nick]:
            return i
    raise E2EFailure(f"nothing was said after the takeover among {len(said)} messages")


def mam_reader(h, port: int):
    return h.client(f"archivist@{DOMAIN}/mam", "any password", port, plaintext_ok=True,
                    name="archivist").connect()


def start_previous(h, data: Path) -> tuple[object, GroupchatLoad, str, str]:
    """The service on plugin 0.2.0 with ROOMS persistent rooms of OCCUPANTS occupants; the
    versions of the previous and the current plugin."""
    require_builds()
    old, new = plugin_version(data, PREVIOUS), plugin_version(data, PLUGIN)
    server = serve(h, data, "--plugin", str(PREVIOUS))
    load = GroupchatLoad(server.port, ROOMS, OCCUPANTS, tag="migrate")
    h.cleanups.append(load.close)
    load.setup()
    check(load.version() == old, f"the service on {PREVIOUS.name} says version {load.version()!r}, "
                                 f"muc-host info says {old!r}")
    keep_history(load)
    return server, load, old, new


def swap_under_traffic(h, data: Path) -> tuple[object, GroupchatLoad, str, dict[str, dict[str, int]]]:
    """Starts on 0.2.0, swaps to the current plugin in the middle of steady traffic, which then
    goes on and stops: the service, the load, the current version, and per room how many
    messages each sender had sent before the swap returned."""
    server, load, old, new = start_previous(h, data)
    load.start(RATE)
    time.sleep(BEFORE)
    swap = subprocess.run([str(MUC_HOST), "--data", str(data), "ctl", "swap", str(PLUGIN)],
                          capture_output=True, text=True, timeout=60)
    sent_before: dict[str, dict[str, int]] = {room: {} for room in load.rooms}
    for o in load.occupants:
        sent_before[o.room][o.nick] = o.sent
    time.sleep(AFTER)
    load.stop()
    said = (swap.stdout + swap.stderr).strip()
    check(swap.returncode == 0, f"ctl swap {PLUGIN.name} under traffic exited {swap.returncode}: {said}")
    # The data is upgraded exactly when its owner's version changes.
    check(("the data was upgraded" in said) == (old != new),
          f"swapping {old} for {new}: {said}")
    check(load.version() == new, f"after the swap the service says version {load.version()!r}, not {new!r}")
    delivered_everywhere(load)
    return server, load, new, sent_before


def test_history_reaches_the_archive_through_a_swap_under_traffic(h):
    data = h.data_dir()
    server, load, new, sent_before = swap_under_traffic(h, data)
    reader = mam_reader(h, server.port)
    migrated = {}
    for room in load.rooms:
        said = room_said(load, room)
        migrated[room] = check_archive(reader, room, said, first_said_after(said, sent_before[room]))
    conftest_report.add(
        f"layout migration, hot swap under traffic ({RATE:.0f} messages/s, {ROOMS} rooms): the archive "
        f"of each room holds its 0.2.0 history ({sorted(migrated.values())} messages from before the "
        f"swap) and everything since, in order, with the live stanza-ids; now on {new}")


def say_after_restart(port: int, room: str, r: int) -> list[tuple[str, str]]:
    """A client joins `room` and says LAST_WORDS things: (stanza-id, body) of each, in order."""
    loop = EventLoop()
    try:
        async def talk():
            c = await RawClient(port, f"late{r}").connect()
            await c.join(room, "late")
            for n in range(LAST_WORDS):
                c.send(f"<message type='groupchat' to='{room}' id='late-{n}'><body>late {n}</body></message>")
            await c.wait_for(lambda: len(c.groupchat) >= LAST_WORDS, f"the echoes of {LAST_WORDS} messages")
            await c.close()
            return [(c.stanza_ids.get(g, ""), g[1]) for g in c.groupchat]
        echoes = loop.run(talk(), 30)
    finally:
        loop.close()
    check([text for _, text in echoes] == [f"late {n}" for n in range(LAST_WORDS)],
          f"{room}: after the restart the room echoed {echoes}")
    check(all(sid for sid, _ in echoes), f"{room}: an echo after the restart has no stanza-id: {echoes}")
    return echoes


def test_history_reaches_the_archive_through_a_restart(h):
    data = h.data_dir()
    server, load, old, new = start_previous(h, data)
    traffic(load, BEFORE)
    delivered_everywhere(load)
    said_before = {room: room_said(load, room) for room in load.rooms}
    code = server.terminate()
    check(code == 0, f"muc-host on {old} exited {code} on SIGTERM\n{server.tail()}")

    server = serve(h, data, "--plugin", str(PLUGIN), name="muc-host-new")
    upgraded = "plugin upgraded the stored data" in server.log()
    check(upgraded == (old != new),
          f"starting {new} on data owned by {old}: the log {'says' if upgraded else 'does not say'} "
          f"the data was upgraded\n{server.tail()}")
    reader = mam_reader(h, server.port)
    migrated = {}
    for r, room in enumerate(load.rooms):
        said = said_before[room] + say_after_restart(server.port, room, r)
        migrated[room] = check_archive(reader, room, said, len(said_before[room]))
    conftest_report.add(
        f"layout migration, restart from {old} on {new}: the archive of each of {ROOMS} rooms holds "
        f"its 0.2.0 history ({sorted(migrated.values())} messages) and what was said after the restart")


def room_still_works(port: int, room: str, version: str) -> None:
    """A fresh client joins `room`, talks in it, gets its message back, and the service answers
    with `version`."""
    loop = EventLoop()
    try:
        async def talk():
            c = await RawClient(port, "survivor").connect()
            await c.join(room, "survivor")
            c.send(f"<message type='groupchat' to='{room}' id='still'><body>still here</body></message>")
            await c.wait_for(lambda: (f"{room}/survivor", "still here") in c.groupchat,
                             "the reflected message")
            answered = await c.service_version()
            await c.close()
            return answered
        answered = loop.run(talk(), 30)
    finally:
        loop.close()
    check(answered == version, f"after the refused rollback the service answers version {answered!r}, "
                               f"not {version!r}")


def test_rollback_over_the_migrated_layout_is_refused(h):
    data = h.data_dir()
    server, load, new, _ = swap_under_traffic(h, data)
    said = refused(data, PREVIOUS, r"layout \d+", re.escape(new))
    check(status_version(data) == new,
          f"after the refused rollback: ctl status says {status_version(data)}")
    room_still_works(server.port, load.rooms[0], new)
    conftest_report.add(f"layout migration, rollback to 0.2.0 refused: {summary(said)}")
