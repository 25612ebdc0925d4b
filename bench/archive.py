"""The room archive (XEP-0313) at size: one room's archive of 1,000,000 messages against a room of
10, through the service as a client sees it. Started by `bench/archive` (`--smoke`: small sizes,
seconds). Figures only, nothing asserted; Python's standard library and muc-bench.

1. Two persistent rooms are filled through the service itself (muc-bench, one occupant sending
   as fast as the server takes it): `big0` with ARCHIVED messages, `small0` with 10.
2. Wake: the service restarted, the first query to each room (which reads the room from disk)
   and the resident memory it adds, small room then big room, over several restarts.
3. Query latency on the big room (send to answer, one query at a time): the newest page of 50
   (RSM `<before/>`), a page of 50 after a random id, a page of 50 from a random start time, the
   metadata query.
4. The whole archive paged forward, 250 a page: messages/s.
5. What archiving costs a groupchat message: the duel's 100-occupant scenario, rooms with
   `muc#roomconfig_enablearchiving` on against off, alternated on one server.
6. Prosody's mod_muc_mam (its internal file store) with the same queries, at PROSODY_ARCHIVED.
"""

import base64
import random
import re
import socket
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from duel import MUC, Server, platform, prosody  # noqa: E402
from scale import bench, resident_mib, started, stop  # noqa: E402

SMOKE = "--smoke" in sys.argv
ARCHIVED = 2_000 if SMOKE else 1_000_000
PROSODY_ARCHIVED = 500 if SMOKE else 20_000
QUERIES = 20 if SMOKE else 200
RESTARTS = 2 if SMOKE else 3
COST_ROUNDS = 1 if SMOKE else 3
COST_MESSAGES = "50" if SMOKE else "1500"
PAGE = 50
MAM = "urn:xmpp:mam:2"
PERSISTENT = "muc#roomconfig_persistentroom=1"


class Client:
    """One c2s session, PLAIN without TLS (the server accepts any password), one query at a
    time: enough to time a query from send to answer."""

    def __init__(self, port: int, user: str):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = ""
        self.ids = 0
        header = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        self.sock.sendall(header.encode())
        self._until("</stream:features>")
        plain = base64.b64encode(f"\0{user}\0any-password".encode()).decode()
        self.sock.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
        if "<success" not in self._until("success", "failure"):
            raise SystemExit(f"archive: login as {user} refused")
        self.sock.sendall(header.encode())
        self._until("</stream:features>")
        self.sock.sendall(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        self._until("</iq>")
        self.buf = ""

    def _until(self, *markers: str) -> str:
        while not any(m in self.buf for m in markers):
            data = self.sock.recv(1 << 20)
            if not data:
                raise SystemExit(f"archive: the server closed the stream: {self.buf[-300:]!r}")
            self.buf += data.decode("utf-8", "replace")
        got, self.buf = self.buf, ""
        return got

    def iq(self, to: str, kind: str, payload: str) -> tuple[str, float]:
        """Sends an iq and returns everything received up to its answer, and the seconds taken."""
        self.ids += 1
        iq_id = f"q{self.ids}"
        answer = re.compile(rf"<iq\b[^>]*\bid=['\"]{iq_id}['\"][^>]*?(/>|>.*?</iq>)", re.S)
        begun = time.perf_counter()
        self.sock.sendall(f"<iq type='{kind}' id='{iq_id}' to='{to}'>{payload}</iq>".encode())
        while (m := answer.search(self.buf)) is None:
            data = self.sock.recv(1 << 20)
            if not data:
                raise SystemExit(f"archive: the server closed the stream: {self.buf[-300:]!r}")
            self.buf += data.decode("utf-8", "replace")
        took = time.perf_counter() - begun
        got, self.buf = self.buf[:m.end()], self.buf[m.end():]
        if "type='error'" in m.group(0) or 'type="error"' in m.group(0):
            raise QueryRefused(m.group(0)[:300])
        return got, took


class QueryRefused(Exception):
    pass


def mam_query(fields: dict[str, str], rsm: str) -> str:
    form = ""
    if fields:
        form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                f"<value>{MAM}</value></field>"
                + "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
                + "</x>")
    return f"<query xmlns='{MAM}'>{form}<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query>"


def result_ids(got: str) -> list[str]:
    return [m.group(1) for tag in re.finditer(r"<result\b[^>]*>", got)
            for m in [re.search(r"\bid=['\"]([^'\"]+)['\"]", tag.group(0))] if m]


def stamps(got: str) -> list[str]:
    return re.findall(r"<delay\b[^>]*\bstamp=['\"]([^'\"]+)['\"]", got)


def last_id(got: str) -> str | None:
    m = re.search(r"<last>([^<]+)</last>", got)
    return m.group(1) if m else None


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms"


def page_forward(client: Client, room: str) -> tuple[list[str], list[str], float]:
    """Every id and stamp of `room`'s archive, oldest first, 250 a page; and the seconds taken."""
    ids: list[str] = []
    times: list[str] = []
    after = ""
    begun = time.perf_counter()
    while True:
        got, _ = client.iq(room, "set", mam_query({}, f"<max>250</max>{after}"))
        page = result_ids(got)
        ids += page
        times += stamps(got)
        if "complete='true'" in got or 'complete="true"' in got or not page:
            return ids, times, time.perf_counter() - begun
        after = f"<after>{last_id(got)}</after>"


def query_latencies(client: Client, room: str, ids: list[str], times: list[str]) -> list[tuple[str, str]]:
    # Sliced once: a copy of a million ids per query would flush the caches the server shares.
    followed = ids[:-PAGE]
    shapes = {
        "newest page of 50": lambda: mam_query({}, f"<max>{PAGE}</max><before/>"),
        "page of 50 after an id": lambda: mam_query({}, f"<max>{PAGE}</max><after>{random.choice(followed)}</after>"),
        "page of 50 from a start time": lambda: mam_query({"start": random.choice(times)}, f"<max>{PAGE}</max>"),
    }
    rows = []
    for name, make in shapes.items():
        try:
            samples = [client.iq(room, "set", make())[1] for _ in range(QUERIES)]
            rows.append((name, percentiles(samples)))
        except QueryRefused as refused:
            rows.append((name, f"refused: {refused}"))
    try:
        samples = [client.iq(room, "get", f"<metadata xmlns='{MAM}'/>")[1] for _ in range(QUERIES)]
        rows.append(("metadata query", percentiles(samples)))
    except QueryRefused as refused:
        rows.append(("metadata query", f"refused: {refused}"))
    return rows


def wake(data: Path) -> list[tuple[str, float, float]]:
    """Per restart: (room, seconds of its first query, MiB it added)."""
    woken = []
    for restart in range(RESTARTS):
        server, _ = started(data)
        try:
            client = Client(server.port, "waker")
            time.sleep(0.5)
            # Each room first on alternate restarts: the first query after a start pays for more.
            for room in ("small0", "big0") if restart % 2 == 0 else ("big0", "small0"):
                before = resident_mib(server)
                _, took = client.iq(f"{room}@{MUC}", "get", f"<metadata xmlns='{MAM}'/>")
                woken.append((room, took, resident_mib(server) - before))
        finally:
            stop(server)
    return woken


def archiving_cost(server: Server) -> list[tuple[str, str]]:
    """Server CPU per 1M deliveries, 100 occupants and one sender, archiving on against off."""
    figures: dict[str, list[float]] = {"on": [], "off": []}
    for round_ in range(COST_ROUNDS):
        for setting, value in (("off", "0"), ("on", "1")):
            r = bench(server, "--occupants", "100", "--senders", "1", "--messages", COST_MESSAGES,
                      "--room-prefix", f"cost{setting}{round_}x", "--user-prefix", f"cost{setting}{round_}x",
                      "--room-config", f"muc#roomconfig_enablearchiving={value}")
            figures[setting].append(r["server_cpu_seconds_per_million"] or 0)
    on, off = statistics.median(figures["on"]), statistics.median(figures["off"])
    return [("CPU s per 1M deliveries, archiving off", f"{off:.2f}"),
            ("CPU s per 1M deliveries, archiving on", f"{on:.2f}  ({(on / off - 1) * 100:+.1f}%)" if off else f"{on:.2f}")]


def fill(server: Server, room_prefix: str, messages: int) -> float:
    """One occupant says `messages` things in a new persistent room: messages/s."""
    r = bench(server, "--occupants", "1", "--senders", "1", "--messages", str(messages), "--window", "64",
              "--room-prefix", room_prefix, "--user-prefix", f"{room_prefix}u", "--room-config", PERSISTENT)
    return messages / r["seconds"] if r.get("seconds") else float("nan")


def main() -> None:
    random.seed(17)
    scratch = Server("archive", "")
    report: list[tuple[str, str]] = []
    try:
        data = scratch.dir / "data"
        server, _ = started(data)
        try:
            fill(server, "small", 10)
            rate = fill(server, "big", ARCHIVED)
            report.append((f"filled through the service ({ARCHIVED} messages, one sender)", f"{rate:,.0f} messages/s"))
        finally:
            stop(server)
        size = (data / "muc.sqlite3").stat().st_size / 2**20
        report.append(("store on disk", f"{size:,.0f} MiB"))

        woken = wake(data)
        for room, label in (("small0", "10 messages"), (("big0"), f"{ARCHIVED:,} messages")):
            took = [t for r, t, _ in woken if r == room]
            grew = [m for r, _, m in woken if r == room]
            report.append((f"wake, room of {label}",
                           f"first query {statistics.median(took) * 1000:.1f} ms, +{statistics.median(grew):.1f} MiB resident"))

        server, _ = started(data)
        try:
            client = Client(server.port, "reader")
            ids, times, seconds = page_forward(client, f"big0@{MUC}")
            report.append(("paging the whole archive forward, 250 a page",
                           f"{len(ids):,} messages in {seconds:.1f} s: {len(ids) / seconds:,.0f} messages/s"))
            for name, figure in query_latencies(client, f"big0@{MUC}", ids, times):
                report.append((f"muc-host, {ARCHIVED:,} archived: {name}", figure))
            report += archiving_cost(server)
        finally:
            server.stop()

        theirs, _ = prosody(own_muc=True, archive=True)
        try:
            fill(theirs, "big", PROSODY_ARCHIVED)
            client = Client(theirs.port, "reader")
            ids, times, seconds = page_forward(client, f"big0@{MUC}")
            report.append(("Prosody mod_muc_mam: paging its archive forward",
                           f"{len(ids):,} messages in {seconds:.1f} s: {len(ids) / max(seconds, 1e-9):,.0f} messages/s"))
            # Prosody's internal store keeps a room's newest 10,000 (its archive_item_limit).
            held = f"{len(ids):,} archived of {PROSODY_ARCHIVED:,} said"
            if len(ids) > PAGE:
                for name, figure in query_latencies(client, f"big0@{MUC}", ids, times):
                    report.append((f"Prosody mod_muc_mam, {held}: {name}", figure))
        finally:
            theirs.stop()
    finally:
        scratch.stop()
    print(f"\nThe room archive at size, on {platform()}; client and server share the machine.")
    print(f"({datetime.now(timezone.utc):%Y-%m-%d}; queries one at a time, {QUERIES} of each, send to answer.)\n")
    width = max(len(k) for k, _ in report)
    for key, value in report:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
