"""Hot swap of the MUC logic (issue 7): `muc-host ctl swap` under a steady groupchat load through
the bundled listener, checked for lost, duplicated or reordered messages, presence churn and
the visible difference between the two builds (the service's XEP-0092 version); and every bad
input refused with the old plugin still serving.

slixmpp cannot hold 500 messages/s to 60 sessions on two shared cores, so the load runs on raw
sockets (asyncio streams, SASL PLAIN under `--insecure-auth`, no TLS) and scans what arrives
with regular expressions: the server writes attributes in single quotes and our bodies are
plain text. `RawClient` and `GroupchatLoad` are also what `bench/swap` drives.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import math
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

import conftest_report
from harness import DOMAIN, MUC_DOMAIN, MUC_HOST, REPO, E2EFailure, EventLoop, ctl, warm_cache

COMPONENTS = REPO / "target/wasm32-wasip2/component"
PLUGIN = COMPONENTS / "muc_plugin.wasm"
SWAP_VARIANT = COMPONENTS / "muc_plugin_swap_test.wasm"
CONTRACT_V2 = COMPONENTS / "contract_v2_plugin.wasm"
MISBEHAVING = COMPONENTS / "misbehaving_plugin.wasm"
VERSIONS = {PLUGIN: "0.3.0", SWAP_VARIANT: "0.3.0+swap-test"}

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
MUC = "http://jabber.org/protocol/muc"
MUC_OWNER = MUC + "#owner"

# The load (issue 7: 20 rooms, 500 groupchat messages/s in total).
ROOMS = 20
OCCUPANTS = 3
RATE = 500.0
SWAPS = 10
SWAP_INTERVAL = 0.5  # seconds between the starts of two swaps

# The raw scanner: top-level stanzas and the few things read from them.
STANZA_START = re.compile(r"<(message|presence|iq)[\s/>]")
ATTR = re.compile(r"([\w:-]+)='([^']*)'")
BODY = re.compile(r"<body>([^<]*)</body>")
STANZA_ID = re.compile(r"<stanza-id\s[^>]*>")
VERSION = re.compile(r"<version>([^<]*)</version>")
PAUSE = re.compile(r"pause_us=(\d+)")


def check(cond: bool, message: str) -> None:
    if not cond:
        raise E2EFailure(message)


def require_builds() -> None:
    missing = [p for p in [MUC_HOST, PLUGIN, SWAP_VARIANT] if not p.exists()]
    if missing:
        raise E2EFailure(f"not built: {', '.join(map(str, missing))}: run scripts/build and "
                         "scripts/build-swap-variant first")


# --------------------------------------------------------------------------------------------
# A cheap XMPP client on raw sockets


class RawClient:
    """One c2s session (PLAIN without TLS: the server must run with --insecure-auth) that keeps,
    in arrival order, the groupchat messages with a body it receives as (from, body), and every
    other stanza as text; iq answers go to whoever awaits them."""

    def __init__(self, port: int, user: str, resource: str = "load"):
        self.port = port
        self.user = user
        self.resource = resource
        self.jid = f"{user}@{DOMAIN}/{resource}"
        self.groupchat: list[tuple[str, str]] = []
        self.stanza_ids: dict[tuple[str, str], str] = {}  # (from, body) -> the room's stanza-id
        self.presences: list[str] = []
        self.subjects = 0  # groupchat messages without a body (the subject on joining)
        self.others: list[str] = []  # anything else unasked for: errors, stray stanzas
        self.closed: Optional[str] = None  # why the stream ended, if it did
        self._waiters: dict[str, asyncio.Future] = {}
        self._buf = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._ids = 0
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self._task: Optional[asyncio.Task] = None

    # -- negotiation

    def _header(self) -> str:
        return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                f"xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}' version='1.0'>")

    async def _until(self, *markers: str, timeout: float = 15) -> str:
        async def read():
            while not any(m in self._buf for m in markers):
                data = await self.reader.read(65536)
                if not data:
                    raise E2EFailure(f"{self.jid}: stream closed during negotiation: {self._buf!r}")
                self._buf += self._decoder.decode(data)
        try:
            await asyncio.wait_for(read(), timeout)
        except asyncio.TimeoutError:
            raise E2EFailure(f"{self.jid}: no {markers} within {timeout}s; got {self._buf!r}")
        got, self._buf = self._buf, ""
        return got

    async def connect(self) -> "RawClient":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self._header().encode())
        await self._until("</stream:features>")
        plain = base64.b64encode(f"\0{self.user}\0any-password".encode()).decode()
        self.writer.write(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{plain}</auth>".encode())
        got = await self._until("</success>", "</failure>", "<success")
        if "<success" not in got:
            raise E2EFailure(f"{self.jid}: PLAIN refused (is the server run with --insecure-auth?): {got!r}")
        self.writer.write(self._header().encode())
        await self._until("</stream:features>")
        self.writer.write(f"<iq type='set' id='bind'><bind xmlns='{BIND}'><resource>{self.resource}"
                          f"</resource></bind></iq>".encode())
        got = await self._until("</iq>")
        if "type='result'" not in got and 'type="result"' not in got:
            raise E2EFailure(f"{self.jid}: binding refused: {got!r}")
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        return self

    # -- receiving

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    self.closed = self.closed or f"the server closed the connection; unread: {self._buf[-500:]!r}"
                    break
                self._buf += self._decoder.decode(data)
                self._scan()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001: any failure here is a finding
            self.closed = f"reading failed: {e!r}"
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(E2EFailure(f"{self.jid}: {self.closed}"))

    def _scan(self) -> None:
        buf = self._buf
        pos = 0
        while True:
            m = STANZA_START.search(buf, pos)
            if m is None:
                break
            between = buf[pos:m.start()]
            if between.strip():
                self.others.append(between)  # a stream error, say
            name = m.group(1)
            tag_end = buf.find(">", m.end() - 1)
            if tag_end < 0:
                break
            if buf[tag_end - 1] == "/":
                end = tag_end + 1
            else:
                close = buf.find(f"</{name}>", tag_end)
                if close < 0:
                    break
                end = close + len(name) + 3
            self._stanza(name, buf[m.start():tag_end + 1], buf[m.start():end])
            pos = end
        rest = buf[pos:]
        if "</stream:stream>" in rest or "<stream:error" in rest:
            self.others.append(rest)
            rest = ""
        self._buf = rest

    def _stanza(self, name: str, start_tag: str, text: str) -> None:
        attrs = dict(ATTR.findall(start_tag))
        kind = attrs.get("type")
        if name == "message":
            if kind == "groupchat":
                b = BODY.search(text)
                if b is not None:
                    said = (attrs.get("from", ""), b.group(1))
                    self.groupchat.append(said)
                    room = said[0].split("/", 1)[0]
                    for tag in STANZA_ID.findall(text):
                        sid = dict(ATTR.findall(tag))
                        if sid.get("by") == room and "id" in sid:
                            self.stanza_ids[said] = sid["id"]
                else:
                    self.subjects += 1
                return
            self.others.append(text)
        elif name == "presence":
            self.presences.append(text)
        else:
            waiter = self._waiters.pop(attrs.get("id", ""), None)
            if waiter is not None and kind in ("result", "error"):
                if not waiter.done():
                    waiter.set_result(text)
            elif kind in ("get", "set"):
                # Not a feature of this client: say so, as RFC 6120 asks.
                self.send(f"<iq type='error' id='{attrs.get('id', '')}' to='{attrs.get('from', DOMAIN)}'>"
                          "<error type='cancel'><service-unavailable "
                          "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
            else:
                self.others.append(text)

    # -- sending

    def send(self, xml: str) -> None:
        self.writer.write(xml.encode())

    def next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    async def iq(self, xml_without_id: str, timeout: float = 10) -> str:
        """Sends `<iq ...>` (written without an id: one is added) and returns the answer's text."""
        iq_id = self.next_id("iq")
        fut = asyncio.get_running_loop().create_future()
        self._waiters[iq_id] = fut
        self.send(xml_without_id.replace("<iq ", f"<iq id='{iq_id}' ", 1))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise E2EFailure(f"{self.jid}: no answer to {xml_without_id} within {timeout}s")

    async def service_version(self) -> str:
        """The MUC service's XEP-0092 version."""
        answer = await self.iq(f"<iq type='get' to='{MUC_DOMAIN}'><query xmlns='jabber:iq:version'/></iq>")
        m = VERSION.search(answer)
        if "type='result'" not in answer or m is None:
            raise E2EFailure(f"{self.jid}: the version query was answered with {answer}")
        return m.group(1)

    async def wait_for(self, cond, what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.closed:
                raise E2EFailure(f"{self.jid}: waiting for {what}: {self.closed}")
            if time.monotonic() > deadline:
                raise E2EFailure(f"{self.jid}: no {what} within {timeout}s; presences: "
                                 f"{self.presences[-5:]}; other stanzas: {self.others[-5:]}")
            await asyncio.sleep(0.01)

    async def join(self, room: str, nick: str) -> None:
        self.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>")
        await self.wait_for(lambda: any(f"from='{room}/{nick}'" in p and "code='110'" in p
                                        for p in self.presences),
                            f"self-presence from {room}/{nick}")

    async def close(self) -> None:
        if self.writer is None:
            return
        if self._task is not None:
            self._task.cancel()
        try:
            self.writer.write(b"</stream:stream>")
            self.writer.close()
        except Exception:  # noqa: BLE001: already gone
            pass


async def instant_room(owner: RawClient, room: str, nick: str) -> None:
    """The owner creates `room` and accepts the default configuration (XEP-0045 §10.1.2)."""
    await owner.join(room, nick)
    answer = await owner.iq(f"<iq type='set' to='{room}'><query xmlns='{MUC_OWNER}'>"
                            f"<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    if "type='result'" not in answer:
        raise E2EFailure(f"{room}: the instant-room form was refused: {answer}")


# --------------------------------------------------------------------------------------------
# The load


@dataclass
class Occupant:
    client: RawClient
    room: str
    nick: str
    sent: int = 0


@dataclass
class LoadResult:
    sent: int
    seconds: float
    rate: float
    expected_deliveries: int
    delivered: int
    lost: int = 0  # deliveries that never happened (per occupant)
    duplicates: int = 0  # deliveries beyond the first (per occupant)
    problems: list[str] = field(default_factory=list)


class GroupchatLoad:
    """`rooms` rooms of `occupants` raw clients each, in a loop thread of their own, sending
    groupchat messages at a steady total rate (each body `NICK N`, N counting per sender), and
    the check that every one reached every occupant of its room exactly once and in the same
    order."""

    def __init__(self, port: int, rooms: int = ROOMS, occupants: int = OCCUPANTS, tag: str = "swap"):
        self.port = port
        self.rooms = [f"{tag}-room{r}@{MUC_DOMAIN}" for r in range(rooms)]
        self.occupants_per_room = occupants
        self.loop = EventLoop()
        self.occupants: list[Occupant] = []
        self.prober: Optional[RawClient] = None
        self._stop = False
        self._pacer: Optional[asyncio.Future] = None
        self.presences_at_start: dict[int, int] = {}
        self.started = 0.0
        self.stopped = 0.0
        self.sent = 0

    # setup

    def setup(self, timeout: float = 60) -> None:
        self.loop.run(self._setup(), timeout)

    async def _setup(self) -> None:
        self.prober = await RawClient(self.port, "prober").connect()
        by_room = []
        for r, room in enumerate(self.rooms):
            members = [Occupant(RawClient(self.port, f"u{r}x{o}"), room, f"n{o}")
                       for o in range(self.occupants_per_room)]
            by_room.append(members)
        everyone = [o for members in by_room for o in members]
        self.occupants = everyone  # for close(), should the setup fail
        await asyncio.gather(*(o.client.connect() for o in everyone))
        await asyncio.gather(*(instant_room(members[0].client, members[0].room, members[0].nick)
                               for members in by_room))
        for i in range(1, self.occupants_per_room):
            await asyncio.gather(*(members[i].client.join(members[i].room, members[i].nick)
                                   for members in by_room))
        # Every occupant has seen every other one arrive: from here on, no presence at all.
        for o in everyone:
            await o.client.wait_for(lambda o=o: sum(f"from='{o.room}/" in p for p in o.client.presences)
                                    >= self.occupants_per_room,
                                    f"the presences of the {self.occupants_per_room} occupants of {o.room}")
        await asyncio.sleep(0.2)
        for o in everyone:
            if o.client.groupchat or o.client.others:
                raise E2EFailure(f"{o.client.jid}: unexpected stanzas before the load: "
                                 f"{o.client.groupchat[:3]} {o.client.others[:3]}")
        # Senders alternate between rooms: consecutive messages go to different rooms.
        self.occupants = [members[i] for i in range(self.occupants_per_room) for members in by_room]
        self.presences_at_start = {id(o): len(o.client.presences) for o in self.occupants}

    # sending

    def start(self, rate: float = RATE) -> None:
        self._stop = False
        self._pacer = self.loop.run(self._start(rate), 10)

    async def _start(self, rate: float):
        return asyncio.ensure_future(self._pace(rate))

    async def _pace(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        senders = self.occupants
        while not self._stop:
            due = int((loop.time() - self.started) * rate)
            while self.sent < due:
                o = senders[self.sent % len(senders)]
                o.client.send(f"<message type='groupchat' to='{o.room}' id='{o.nick}-{o.sent}'>"
                              f"<body>{o.nick} {o.sent}</body></message>")
                o.sent += 1
                self.sent += 1
            await asyncio.sleep(0.004)
        self.stopped = loop.time()
        await asyncio.gather(*(o.client.writer.drain() for o in senders))

    def stop(self) -> None:
        self._stop = True
        self.loop.run(self._wait_pacer(), 30)

    async def _wait_pacer(self) -> None:
        await self._pacer

    def version(self) -> str:
        return self.loop.run(self.prober.service_version(), 15)

    # checking

    def expected(self, room: str) -> int:
        return sum(o.sent for o in self.occupants if o.room == room)

    def delivered(self) -> int:
        return sum(len(o.client.groupchat) for o in self.occupants)

    def drain(self, quiet: float = 5.0, timeout: float = 60) -> None:
        """Waits until every occupant has its room's count, or nothing arrived for `quiet` s."""
        want = sum(self.expected(o.room) for o in self.occupants)
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = self.delivered()
            if now >= want:
                time.sleep(0.3)  # a duplicate would show up now
                return
            if now != last:
                last, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                return
            time.sleep(0.05)

    def result(self) -> LoadResult:
        seconds = self.stopped - self.started
        problems = []
        lost_total = dup_total = 0
        for room in self.rooms:
            members = [o for o in self.occupants if o.room == room]
            sent = {(f"{room}/{o.nick}", f"{o.nick} {n}") for o in members for n in range(o.sent)}
            sequences = {}
            for o in members:
                seq = [g for g in o.client.groupchat if g[0].startswith(room + "/")]
                foreign = len(o.client.groupchat) - len(seq)
                if foreign:
                    problems.append(f"{o.client.jid}: {foreign} groupchat messages from other rooms")
                got = set(seq)
                lost = sent - got
                extra = got - sent
                dups = len(seq) - len(got)
                lost_total += len(lost)
                dup_total += dups
                if lost:
                    problems.append(f"{o.client.jid} in {room}: {len(lost)} of {len(sent)} messages never "
                                    f"arrived, e.g. {sorted(lost)[:5]}")
                if extra:
                    problems.append(f"{o.client.jid} in {room}: {len(extra)} messages nobody sent: "
                                    f"{sorted(extra)[:5]}")
                if dups:
                    counts = {}
                    for g in seq:
                        counts[g] = counts.get(g, 0) + 1
                    problems.append(f"{o.client.jid} in {room}: {dups} duplicate deliveries, e.g. "
                                    f"{[g for g, c in counts.items() if c > 1][:5]}")
                # Per sender, in the order sent.
                last_n: dict[str, int] = {}
                for frm, b in seq:
                    nick, n = b.rsplit(" ", 1)
                    if last_n.get(nick, -1) >= int(n):
                        problems.append(f"{o.client.jid} in {room}: {b!r} after {nick} {last_n[nick]}")
                        break
                    last_n[nick] = int(n)
                sequences[o.nick] = seq
            # The room's order is the same for every occupant.
            first_nick, first = next(iter(sequences.items()))
            for nick, seq in sequences.items():
                if seq != first:
                    at = next((i for i, (a, b) in enumerate(zip(seq, first)) if a != b), min(len(seq), len(first)))
                    problems.append(f"{room}: {nick} and {first_nick} saw different orders from position {at}: "
                                    f"{seq[at:at + 3]} vs {first[at:at + 3]}")
        for o in self.occupants:
            late = o.client.presences[self.presences_at_start[id(o)]:]
            if late:
                problems.append(f"{o.client.jid}: {len(late)} presences after the joins, e.g. {late[:3]}")
            unavailable = [p for p in o.client.presences if "type='unavailable'" in p]
            if unavailable:
                problems.append(f"{o.client.jid}: unavailable presence received: {unavailable[:3]}")
            if o.client.others:
                problems.append(f"{o.client.jid}: unexpected stanzas: {o.client.others[:3]}")
            if o.client.closed:
                problems.append(f"{o.client.jid}: {o.client.closed}")
        expected = sum(self.expected(o.room) for o in self.occupants)
        return LoadResult(sent=self.sent, seconds=seconds, rate=self.sent / seconds if seconds else 0.0,
                          expected_deliveries=expected, delivered=self.delivered(), lost=lost_total,
                          duplicates=dup_total, problems=problems)

    def close(self) -> None:
        async def close_all():
            for o in self.occupants:
                await o.client.close()
            if self.prober is not None:
                await self.prober.close()
        try:
            self.loop.run(close_all(), 10)
        except Exception:  # noqa: BLE001: teardown
            pass
        self.loop.close()


@dataclass
class SwapRecord:
    target: Path
    code: int
    seconds: float  # client side: `ctl swap` from start to exit
    output: str
    version: Optional[str]


def swap_under_load(data: Path, load: GroupchatLoad, swaps: int, interval: float,
                    first: Path = SWAP_VARIANT) -> list[SwapRecord]:
    """`ctl swap` `swaps` times, alternating between the two builds starting with `first`, one
    every `interval` s, each followed by a version query from a client."""
    records = []
    other = {PLUGIN: SWAP_VARIANT, SWAP_VARIANT: PLUGIN}
    target = first
    next_at = time.monotonic()
    for _ in range(swaps):
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at = time.monotonic() + interval
        started = time.monotonic()
        r = ctl(data, "swap", target)
        took = time.monotonic() - started
        try:
            version = load.version()
        except E2EFailure as e:
            version = f"(no answer: {e})"
        records.append(SwapRecord(target, r.returncode, took, (r.stdout + r.stderr).strip(), version))
        target = other[target]
    return records


def swap_pauses(log: str) -> list[int]:
    """The pause (µs) of every successful swap in the server's log."""
    return [int(m.group(1)) for line in log.splitlines()
            if "plugin swap" in line and 'outcome="swapped"' in line
            for m in [PAUSE.search(line)] if m]


def compile_times(log: str) -> list[tuple[str, int]]:
    """(hash, ms) of every `new plugin compiled` line."""
    out = []
    for line in log.splitlines():
        if "new plugin compiled" in line:
            h = re.search(r'hash="?([0-9a-f]+)', line)
            ms = re.search(r"compile_ms=(\d+)", line)
            if h and ms:
                out.append((h.group(1), int(ms.group(1))))
    return out


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] if s else float("nan")


def serve(h, data: Path, *args: str, name: str = "muc-host"):
    """`muc-host serve --insecure-auth` on `data` (bundled, ephemeral port), once its control
    socket is there too: the service prints its c2s line before binding the socket. `name`
    names its log files (a second service on the same data needs another)."""
    server = h.bundled(data, "--insecure-auth", *args, name=name)
    sock = data / "control" / "muc-host.sock"
    deadline = time.monotonic() + 10
    while not sock.exists():
        if server.service.returncode() is not None or time.monotonic() > deadline:
            raise E2EFailure(f"no control socket at {sock}\n{server.tail()}")
        time.sleep(0.02)
    return server


def precompile(data: Path, plugin: Path) -> float:
    """`muc-host info --plugin PLUGIN` on `data`: compiles into its cache; the seconds it took."""
    started = time.monotonic()
    r = subprocess.run([str(MUC_HOST), "--data", str(data), "info", "--plugin", str(plugin)],
                       capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    if r.returncode != 0:
        raise E2EFailure(f"muc-host info --plugin {plugin} exited {r.returncode}: {r.stderr}")
    return took


# --------------------------------------------------------------------------------------------
# Under load


def test_swaps_under_load_lose_nothing(h):
    require_builds()
    data = h.data_dir()
    precompile(data, SWAP_VARIANT)  # the swaps then load it from the cache
    server = serve(h, data)
    load = GroupchatLoad(server.port)
    h.cleanups.append(load.close)
    load.setup()
    check(load.version() == VERSIONS[PLUGIN], f"the service starts on {load.version()!r}")

    load.start(RATE)
    time.sleep(1.0)
    records = swap_under_load(data, load, SWAPS, SWAP_INTERVAL)
    time.sleep(0.5)
    load.stop()
    load.drain()
    result = load.result()
    log = server.log()
    pauses = swap_pauses(log)

    problems = list(result.problems)
    for i, rec in enumerate(records):
        want = VERSIONS[rec.target]
        if rec.code != 0:
            problems.append(f"swap {i + 1} to {rec.target.name} exited {rec.code}: {rec.output}")
        if rec.version != want:
            problems.append(f"after swap {i + 1} to {rec.target.name} the service says version "
                            f"{rec.version!r}, not {want!r}")
    if len(pauses) != SWAPS:
        problems.append(f"{len(pauses)} 'plugin swap ... outcome=\"swapped\"' log lines for {SWAPS} swaps")
    if server.service.returncode() is not None:
        problems.append(f"muc-host exited with {server.service.returncode()}")

    conftest_report.add(
        f"hot swap under load: {result.sent} groupchat messages in {result.seconds:.1f} s "
        f"({result.rate:.0f}/s) to {len(load.rooms)} rooms x {load.occupants_per_room} occupants; "
        f"{result.delivered}/{result.expected_deliveries} deliveries; {len(records)} swaps, versions "
        f"{' '.join(r.version or '?' for r in records)}; pauses us {pauses}; ctl swap ms "
        f"{[round(r.seconds * 1000) for r in records]}")
    assert not problems, "\n".join(problems[:40]) + (f"\n... {len(problems) - 40} more" if len(problems) > 40 else "") \
        + f"\n{server.tail()}"
    assert result.rate >= 0.9 * RATE, f"the load ran at {result.rate:.0f} messages/s, not {RATE:.0f}"


# --------------------------------------------------------------------------------------------
# Bad input


def status(data: Path) -> str:
    r = ctl(data, "status")
    check(r.returncode == 0, f"ctl status exited {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


def status_version(data: Path) -> str:
    m = re.search(r"^version:\s+(\S+)", status(data), re.M)
    check(m is not None, f"no version line in ctl status: {status(data)}")
    return m.group(1)


def room_works(port: int, tag: str) -> None:
    """A fresh client creates a room, talks in it and gets its message back."""
    loop = EventLoop()
    try:
        async def talk():
            c = await RawClient(port, f"checker-{tag}").connect()
            room = f"after-{tag}@{MUC_DOMAIN}"
            await instant_room(c, room, "checker")
            c.send(f"<message type='groupchat' to='{room}' id='hello'><body>still here</body></message>")
            await c.wait_for(lambda: (f"{room}/checker", "still here") in c.groupchat, "the reflected message")
            version = await c.service_version()
            await c.close()
            return version
        version = loop.run(talk(), 30)
        check(version == VERSIONS[PLUGIN], f"the service answers version {version!r} after a refused swap")
    finally:
        loop.close()


def summary(said: str, limit: int = 220) -> str:
    """A refusal on one line for the report: wasm backtrace lines left out."""
    lines = []
    for line in said.splitlines():
        if re.match(r"\s*\d+:\s+0x[0-9a-f]+ ", line):  # a frame; the last one ends with the cause
            line = line.rsplit(">: ", 1)[1] if ">: " in line else ""
        lines.append(line.strip())
    text = re.sub(r"\s+", " ", " ".join(lines))
    return text if len(text) <= limit else text[:limit] + "..."


def refused(data: Path, plugin: Path, *patterns: str) -> str:
    r = ctl(data, "swap", plugin)
    said = (r.stdout + r.stderr).strip()
    check(r.returncode != 0, f"ctl swap {plugin} exited 0: {said}")
    for pattern in patterns:
        check(re.search(pattern, said, re.I) is not None,
              f"ctl swap {plugin}: the refusal does not say /{pattern}/: {said}")
    return said


def test_bad_plugins_leave_the_old_one_serving(h, tmp_path):
    require_builds()
    data = h.data_dir()
    server = serve(h, data)
    core = tmp_path / "core-module.wasm"
    core.write_bytes(b"\0asm\x01\0\0\0")
    said = {
        "not a component (README.md)": refused(data, REPO / "README.md", r"magic|not.*wasm|webassembly"),
        "a core module": refused(data, core, r"component|module"),
        "contract 2.0.0": refused(data, CONTRACT_V2, r"2\.0\.0", r"1\.\d+\.\d+"),
    }
    check(status_version(data) == VERSIONS[PLUGIN], f"after the refusals: {status(data)}")
    room_works(server.port, "bad-files")
    for what, text in said.items():
        conftest_report.add(f"hot swap refused, {what}: {summary(text)}")


@pytest.mark.parametrize("mode,cause", [("trap", r"wasm trap"),
                                        ("loop", r"time budget of \d+ ms exceeded"),
                                        ("hoard", r"memory cap of \d+ bytes reached"),
                                        ("fail", r"asked to fail")])
def test_plugin_failing_in_init_is_refused(h, mode, cause):
    require_builds()
    data = h.data_dir()
    server = serve(h, data, "--admin", f"init-{mode}@fixture.invalid")
    said = refused(data, MISBEHAVING, r"init", cause)
    check(status_version(data) == VERSIONS[PLUGIN], f"after init-{mode}: {status(data)}")
    room_works(server.port, f"init-{mode}")
    conftest_report.add(f"hot swap refused, init {mode}: {summary(said)}")


def test_second_swap_during_a_swap_is_refused(h):
    require_builds()
    data = h.data_dir()
    server = serve(h, data, "--admin", "init-loop@fixture.invalid")
    slow = subprocess.Popen([str(MUC_HOST), "--data", str(data), "ctl", "swap", str(MISBEHAVING)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # inside the first swap's init, which loops until the 1 s budget
        check(slow.poll() is None, "the first swap ended before the second was asked for")
        second = refused(data, SWAP_VARIANT, r"already in progress")
    finally:
        out, err = slow.communicate(timeout=30)
    check(slow.returncode != 0 and "time budget" in err,
          f"the first swap (init loops) exited {slow.returncode}: {out}{err}")
    check(status_version(data) == VERSIONS[PLUGIN], f"after the concurrent swaps: {status(data)}")
    room_works(server.port, "concurrent")
    # Refused, not queued: the swap asked for second never happens.
    check(not any("0.3.0+swap-test" in line for line in server.log().splitlines() if "plugin swap" in line),
          "the second swap was carried out later (queued), not refused")
    conftest_report.add(f"hot swap refused, second swap during one: {summary(second)}")


def test_control_socket_refuses_another_user(h):
    require_builds()
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a request as nobody")
    # Not under pytest's tmp_path (0700 above it): nobody must reach DATA itself, so that what
    # refuses it is DATA/control (0700) and the socket (0600), not some parent directory.
    data = Path(tempfile.mkdtemp(prefix="muc-e2e-ctl-"))
    h.cleanups.append(lambda: shutil.rmtree(data, ignore_errors=True))
    os.chmod(data, 0o711)
    warm = warm_cache()
    if warm is not None and (warm / "cache").is_dir():
        shutil.copytree(warm / "cache", data / "cache")
    server = serve(h, data)
    control = data / "control"
    sock = control / "muc-host.sock"
    check(stat.S_IMODE(control.stat().st_mode) == 0o700, f"{control} has mode {oct(control.stat().st_mode)}")
    check(stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600,
          f"{sock} has mode {oct(sock.stat().st_mode)}")
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    reach = subprocess.run([*nobody, "test", "-x", str(data)], timeout=10)
    check(reach.returncode == 0, f"nobody cannot even enter {data}: the test would prove nothing")
    r = ctl(data, "status", as_user=("nobody", "nogroup"))
    said = (r.stdout + r.stderr).strip()
    check(r.returncode != 0, f"ctl status as nobody exited 0: {said}")
    check("permission denied" in said.lower(), f"ctl status as nobody: {said}")
    r = ctl(data, "swap", SWAP_VARIANT, as_user=("nobody", "nogroup"))
    check(r.returncode != 0 and "permission denied" in (r.stdout + r.stderr).lower(),
          f"ctl swap as nobody: exit {r.returncode}: {r.stdout}{r.stderr}")
    check(status_version(data) == VERSIONS[PLUGIN], f"after nobody's requests: {status(data)}")
    room_works(server.port, "nobody")
    conftest_report.add(f"control socket as nobody: {summary(said)}")
