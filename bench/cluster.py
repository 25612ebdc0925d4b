"""Several instances: what the store and a second instance change, and how long a killed
instance's rooms are away. Started by `bench/cluster` (`--smoke`: tiny sizes, seconds). Figures
only; it fails loudly when something does not work (a run that cannot finish, a room that does not
come back, messages that reach the wrong instance), never prints a figure it did not measure.
Runs with the end-to-end tests' Python (target/e2e-venv): ejabberd, the muc-host instances behind
it and PostgreSQL are started by their helpers (tests/e2e/ejabberd.py, test_cluster.py,
postgres.py); the load is muc-bench's.

(a) One instance, the store: the duel's 100-occupant scenario (100 occupants, 1 sender; rooms made
    persistent, so that every message is committed to the store) against `muc-host serve` on
    SQLite and on PostgreSQL, alternated rounds on two servers running side by side: muc-host's CPU
    per delivery (its process, as the duel counts it), PostgreSQL's own processes beside it, and
    p99 latency.
(b) 20 rooms over ONE and over TWO muc-host instances behind one ejabberd (`domain_balancing`,
    `bare_destination`, `component_number` 1 and 2), each configuration on one PostgreSQL
    database, alternated rounds: deliveries/s and p99 as fast as the servers take the messages.
    Each instance's count of messages in must match the rooms ejabberd's slots give it.
(c) Takeover: one of the two instances killed with -9 and restarted at once, repeatedly: the time
    from the kill until its component link is back, and until each of its rooms reflects a
    message again (one client rejoins and speaks in each every TICK until it does). Its rooms
    stay its own meanwhile: ejabberd swallows what is sent to a vacant slot, and the restarted
    instance takes that slot back (the only vacant one), with the same --data and --store.

Each configuration has a fresh database on the cluster: MUC_TEST_POSTGRES's (as .ci/run starts
it), else one this run starts and removes (scripts/postgres).
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator, Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests/e2e"))
from archive import PERSISTENT, Client  # noqa: E402
from duel import MUC, Server, muc_host, NO_FLOOD_LIMITS, platform, proc_stats, wait_until_quiet  # noqa: E402
from scale import bench  # noqa: E402
from harness import MUC_HOST, Harness  # noqa: E402
from ejabberd import Ejabberd  # noqa: E402
from postgres import Cluster, psql  # noqa: E402
from test_cluster import MESSAGES_IN, scrape, start_instance  # noqa: E402

SMOKE = "--smoke" in sys.argv
ROUNDS = 1 if SMOKE else 3
# (a): the duel's "100 occupants, 1 sender".
STORE_OCCUPANTS, STORE_MESSAGES = (20, 20) if SMOKE else (100, 1500)
# (b): 20 rooms, every occupant in one; messages sized to a few seconds a run here.
ROOMS = 20
SPREAD_OCCUPANTS, SPREAD_SENDERS, SPREAD_MESSAGES = (3, 1, 5) if SMOKE else (20, 2, 150)
# (c)
KILLS = 1 if SMOKE else 5
TICK = 0.02  # seconds between two probes of a room that has not answered yet
TAKEOVER_TIMEOUT = 60.0
CLIENT_NS = "jabber:client"


def require_store_option() -> None:
    """Fails unless this muc-host can keep its state in PostgreSQL (`serve --store URL`)."""
    help_text = subprocess.run([str(MUC_HOST), "serve", "--help"], capture_output=True, text=True,
                               timeout=60, check=True).stdout
    if "--store" not in help_text:
        raise SystemExit(f"cluster: {MUC_HOST} serve has no --store (build main's muc-host: scripts/build)")


class Front:
    """What muc-bench loads: a c2s port, and the muc-host processes whose CPU it counts."""

    def __init__(self, port: int, pids: list[int]):
        self.port = port
        self._pids = pids

    def pids(self) -> list[int]:
        return self._pids


class Postgres:
    """The cluster (the CI's through MUC_TEST_POSTGRES, else one of our own), a fresh database
    per use, and the CPU its processes spend."""

    def __init__(self):
        self.cluster = Cluster.for_session()
        self.databases: list[str] = []
        data_directory = psql(self.cluster.url, "SHOW data_directory")
        self.postmaster = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])

    def database(self) -> str:
        url = self.cluster.create_database()
        self.databases.append(url)
        return url

    def cpu_seconds(self) -> float:
        """CPU seconds of the postmaster, its children now running (the sessions, the writers)
        and those it reaped (counted in its own children's times)."""
        total = 0
        for pid, fields in proc_stats():
            if pid == self.postmaster:
                total += sum(int(f) for f in fields[11:15])
            elif int(fields[1]) == self.postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / 100  # USER_HZ

    def group(self) -> int:
        return os.getpgid(self.postmaster)

    def close(self) -> None:
        for url in self.databases:
            self.cluster.drop_database(url)
        self.cluster.stop()


def median_of(runs: list[dict], key: str) -> Optional[float]:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def measured_cpu(runs: list[dict]) -> bool:
    """CPU time comes in 10 ms ticks: below 0.1 s a run is too short to say anything."""
    return all((r.get("server_cpu_seconds") or 0) >= 0.1 for r in runs)


# ------------------------------------------------------------------------------------------------
# (a) the store


def store_scenario(messages: int) -> list[str]:
    return ["--occupants", str(STORE_OCCUPANTS), "--senders", "1", "--messages", str(messages)]


def store_comparison(pg: Postgres) -> list[str]:
    servers: dict[str, Server] = {}
    try:
        servers["SQLite"] = muc_host()
        servers["PostgreSQL"] = muc_host(extra=("--store", pg.database()))
        groups = {pid for server in servers.values() for pid in server.pids()} | {pg.group()}
        runs: dict[str, list[dict]] = {name: [] for name in servers}
        for name, server in servers.items():  # an unmeasured round each: caches, connections
            bench(server, *store_scenario(5), "--room-prefix", f"warm{name[0].lower()}",
                  "--user-prefix", f"warm{name[0].lower()}", "--room-config", PERSISTENT)
        for round_ in range(ROUNDS):
            for name, server in servers.items():
                wait_until_quiet(groups)
                before = pg.cpu_seconds()
                r = bench(server, *store_scenario(STORE_MESSAGES), "--room-prefix", f"s{round_}{name[0].lower()}x",
                          "--user-prefix", f"s{round_}{name[0].lower()}x", "--room-config", PERSISTENT)
                r["postgres_cpu_seconds"] = pg.cpu_seconds() - before
                runs[name].append(r)
                print(f"cluster: (a) {name} round {round_ + 1}: {r}", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()

    lines = [f"(a) One instance, the store: {STORE_OCCUPANTS} occupants, 1 sender, {STORE_MESSAGES} messages, rooms "
             f"persistent (every message committed); median of {ROUNDS} alternated round(s)", ""]
    sqlite, postgres = runs["SQLite"], runs["PostgreSQL"]
    header = f"    {'':<44} {'SQLite':>10} {'PostgreSQL':>11} {'PG/SQLite':>10}"
    lines += [header, "    " + "-" * (len(header) - 4)]

    def row(label: str, key: str, fmt: str, cpu: bool = False) -> str:
        mine = median_of(sqlite, key)
        theirs = median_of(postgres, key)
        short = cpu and not (measured_cpu(sqlite) and measured_cpu(postgres))
        ratio = "n/a" if short or not mine else f"x{theirs / mine:.2f}"
        return f"    {label:<44} {mine:>10{fmt}} {theirs:>11{fmt}} {ratio:>10}"

    lines.append(row("deliveries/s", "deliveries_per_second", ".0f"))
    lines.append(row("muc-host CPU s per 1M deliveries", "server_cpu_seconds_per_million", ".2f", cpu=True))
    # SQLite works inside muc-host's process; PostgreSQL's work is in its own processes, counted
    # over the whole run (logins and joins too, which the per-delivery figures above leave out).
    pg_cpu = median_of(postgres, "postgres_cpu_seconds") / median_of(postgres, "delivered") * 1e6
    sqlite_cpu = median_of(sqlite, "server_cpu_seconds_per_million")
    both = median_of(postgres, "server_cpu_seconds_per_million") + pg_cpu
    lines.append(f"    {'  PostgreSQL processes, s per 1M (whole run)':<44} {'':>10} {pg_cpu:>11.2f}")
    ratio = f"x{both / sqlite_cpu:.2f}" if measured_cpu(sqlite) and measured_cpu(postgres) else "n/a"
    lines.append(f"    {'  muc-host and its store, s per 1M':<44} {sqlite_cpu:>10.2f} {both:>11.2f} {ratio:>10}")
    lines.append(row("p50 latency, ms", "latency_p50_ms", ".2f"))
    lines.append(row("p99 latency, ms", "latency_p99_ms", ".2f"))
    return lines


# ------------------------------------------------------------------------------------------------
# (b) rooms over one and over two instances


class Deployment:
    """One ejabberd balancing the MUC domain over `count` slots, and `count` muc-host instances
    (started in order: instance i takes slot i + 1) on one store."""

    def __init__(self, h: Harness, count: int, pg: Postgres):
        # ejabberd takes component_number 2..1000: one instance is the domain's plain component.
        balanced = count if count > 1 else None
        self.ejabberd = Ejabberd(h, component_number=balanced, anonymous_logins=True).start()
        store = ["--store", pg.database()]
        self.instances = [start_instance(h, self.ejabberd, f"muc-{count}-{n}", [*store, *NO_FLOOD_LIMITS])
                          for n in range(count)]

    def front(self) -> Front:
        return Front(self.ejabberd.c2s_port, [muc.service.pid for muc in self.instances])

    def groups(self) -> set[int]:
        return {self.ejabberd.service.pid, *(muc.service.pid for muc in self.instances)}

    def run(self, label: str) -> dict:
        """The rooms `label`0.. at full speed: muc-bench's report, with the rooms each instance
        served. Fails when an instance counted other messages than its slot's rooms carried."""
        rooms = [f"{label}{n}@{MUC}" for n in range(ROOMS)]
        slots = (self.ejabberd.slots_of(rooms) if len(self.instances) > 1
                 else {room: 1 for room in rooms})
        before = [scrape(muc).get(MESSAGES_IN, 0.0) for muc in self.instances]
        r = bench(self.front(), "--rooms", str(ROOMS), "--occupants", str(SPREAD_OCCUPANTS),
                  "--senders", str(SPREAD_SENDERS), "--messages", str(SPREAD_MESSAGES),
                  "--room-prefix", label, "--user-prefix", f"{label}u", "--room-config", PERSISTENT)
        counted = [scrape(muc).get(MESSAGES_IN, 0.0) - b for muc, b in zip(self.instances, before)]
        served = [sum(1 for room in rooms if slots[room] == n + 1) for n in range(len(self.instances))]
        expected = [rooms_served * SPREAD_SENDERS * SPREAD_MESSAGES for rooms_served in served]
        if counted != expected:
            raise SystemExit(f"cluster: messages in per instance {counted}, expected {expected} from "
                             f"the rooms ejabberd's slots give each ({served})")
        r["rooms_per_instance"] = served
        return r


def spread(deployments: dict[int, Deployment], pg: Postgres) -> list[str]:
    runs: dict[int, list[dict]] = {count: [] for count in deployments}
    groups = {g for d in deployments.values() for g in d.groups()} | {pg.group()}
    for count, deployment in deployments.items():  # an unmeasured round each
        deployment.run(f"warm{count}x")
    for round_ in range(ROUNDS):
        for count, deployment in deployments.items():
            wait_until_quiet(groups)
            r = deployment.run(f"c{count}r{round_}x")
            runs[count].append(r)
            print(f"cluster: (b) {count} instance(s) round {round_ + 1}: {r}", file=sys.stderr, flush=True)

    one, two = runs[1], runs[2]
    lines = [f"(b) {ROOMS} rooms of {SPREAD_OCCUPANTS} occupants, {SPREAD_SENDERS} sender(s) each, "
             f"{SPREAD_MESSAGES} messages per sender, as fast as the servers take them, behind one "
             f"ejabberd; each configuration on one PostgreSQL database; median of {ROUNDS} alternated round(s)", ""]
    header = f"    {'':<44} {'1 instance':>10} {'2 instances':>11} {'2/1':>10}"
    lines += [header, "    " + "-" * (len(header) - 4)]
    split = ", ".join("/".join(map(str, r["rooms_per_instance"])) for r in two)
    lines.append(f"    {'rooms per instance':<44} {ROOMS:>10} {split:>11}")
    for label, key, fmt, cpu in (("deliveries/s", "deliveries_per_second", ".0f", False),
                                 ("p50 latency, ms", "latency_p50_ms", ".2f", False),
                                 ("p99 latency, ms", "latency_p99_ms", ".2f", False),
                                 ("muc-host CPU s per 1M (instances summed)",
                                  "server_cpu_seconds_per_million", ".2f", True)):
        a, b = median_of(one, key), median_of(two, key)
        short = cpu and not (measured_cpu(one) and measured_cpu(two))
        ratio = "n/a" if short or not a else f"x{b / a:.2f}"
        lines.append(f"    {label:<44} {a:>10{fmt}} {b:>11{fmt}} {ratio:>10}")
    return lines


# ------------------------------------------------------------------------------------------------
# (c) takeover after kill -9


class Prober:
    """One client (PLAIN through ejabberd's anonymous logins) that asks rooms whether they are
    served: each TICK it (re)joins every room that has not answered yet and says something
    there; a room has answered when that message comes back reflected."""

    def __init__(self, port: int, nick: str):
        self.client = Client(port, nick)
        self.nick = nick
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.parser.feed(f"<stream xmlns='{CLIENT_NS}'>")  # the stream's own header is read already
        self.depth = 0
        self.root: Optional[ET.Element] = None
        self.rounds = 0

    def _stanzas(self, until: float) -> Iterator[tuple[ET.Element, float]]:
        """Stanzas received before `until` (time.monotonic()), each with its arrival time."""
        while (left := until - time.monotonic()) > 0:
            self.client.sock.settimeout(left)
            try:
                data = self.client.sock.recv(1 << 16)
            except socket.timeout:
                return
            if not data:
                raise SystemExit("cluster: ejabberd closed the prober's stream")
            at = time.monotonic()
            self.parser.feed(data)
            for event, el in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                    self.root = self.root if self.root is not None else el
                    continue
                self.depth -= 1
                if self.depth == 1:
                    yield el, at
                    self.root.clear()  # nothing kept of what was read

    def until_answered(self, rooms: list[str], timeout: float) -> dict[str, float]:
        """Probes `rooms` until each reflected a probe: when each did (time.monotonic())."""
        self.rounds += 1
        tag = f"probe {self.rounds} "
        answered: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        ticks = 0
        while len(answered) < len(rooms):
            if time.monotonic() > deadline:
                raise SystemExit(f"cluster: rooms still silent {timeout:.0f} s later: "
                                 f"{sorted(set(rooms) - set(answered))}")
            ticks += 1
            probes = "".join(
                f"<presence to='{room}/{self.nick}'><x xmlns='http://jabber.org/protocol/muc'>"
                f"<history maxstanzas='0'/></x></presence>"
                f"<message type='groupchat' to='{room}'><body>{tag}{ticks}</body></message>"
                for room in rooms if room not in answered)
            self.client.sock.sendall(probes.encode())
            for el, at in self._stanzas(time.monotonic() + TICK):
                room, _, nick = el.get("from", "").partition("/")
                if (el.tag == f"{{{CLIENT_NS}}}message" and el.get("type") == "groupchat" and nick == self.nick
                        and room in rooms and room not in answered
                        and (el.findtext(f"{{{CLIENT_NS}}}body") or "").startswith(tag)):
                    answered[room] = at
        return answered


class Restart(threading.Thread):
    """Starts a killed instance again (as a supervisor would, at once) and notes when its
    component link is up."""

    def __init__(self, muc):
        super().__init__(daemon=True, name="cluster-restart")
        self.muc = muc
        self.linked_at: Optional[float] = None
        self.error: Optional[BaseException] = None
        self.start()

    def run(self) -> None:
        try:
            self.muc.start()
            self.linked_at = time.monotonic()
        except BaseException as e:  # reported by linked()
            self.error = e

    def linked(self) -> float:
        self.join(TAKEOVER_TIMEOUT)
        if self.error is not None or self.linked_at is None:
            raise SystemExit(f"cluster: the killed instance did not come back: {self.error!r}")
        return self.linked_at


def takeover(deployment: Deployment) -> list[str]:
    rooms = [f"tk{n}@{MUC}" for n in range(ROOMS)]
    bench(deployment.front(), "--rooms", str(ROOMS), "--occupants", "1", "--messages", "1",
          "--room-prefix", "tk", "--user-prefix", "tkowner", "--room-config", PERSISTENT)
    slots = deployment.ejabberd.slots_of(rooms)
    victim = deployment.instances[0]  # the first connection, slot 1
    its_rooms = [room for room in rooms if slots[room] == 1]
    prober = Prober(deployment.ejabberd.c2s_port, "prober")
    prober.until_answered(rooms, TAKEOVER_TIMEOUT)  # every room is served before the kills
    links: list[float] = []
    answers: list[float] = []
    after_link: list[float] = []
    live: list[float] = []  # the same probe, the instance up and the rooms in memory: the floor
    for kill in range(KILLS):
        time.sleep(1)
        sent_at = time.monotonic()
        live += [at - sent_at for at in prober.until_answered(its_rooms, TAKEOVER_TIMEOUT).values()]
        killed_at = time.monotonic()
        victim.kill9()
        restart = Restart(victim)
        answered = prober.until_answered(its_rooms, TAKEOVER_TIMEOUT)
        linked_at = restart.linked()
        links.append(linked_at - killed_at)
        answers += [at - killed_at for at in answered.values()]
        after_link += [at - linked_at for at in answered.values()]
        print(f"cluster: (c) kill {kill + 1}: link back {links[-1]:.3f} s, rooms answering "
              f"{min(answered.values()) - killed_at:.3f}-{max(answered.values()) - killed_at:.3f} s",
              file=sys.stderr, flush=True)
    ms = lambda seconds: f"{seconds * 1000:.0f} ms"  # noqa: E731
    spread_of = lambda values: f"median {ms(statistics.median(values))}, max {ms(max(values))}"  # noqa: E731
    return [f"(c) Takeover: kill -9 of the instance holding {len(its_rooms)} of the {ROOMS} rooms (one "
            f"PostgreSQL database), restarted at once (no supervisor pause), {KILLS} time(s); a client "
            f"rejoins and speaks in each of its rooms every {TICK * 1000:.0f} ms until the message comes back",
            "",
            f"    {'kill to the component link back':<44} {spread_of(links)}",
            f"    {'kill to a room reflecting a message again':<44} {spread_of(answers)} "
            f"({len(answers)} room takeovers)",
            f"    {'  of which after the link is back':<44} {spread_of(after_link)}",
            f"    {'the same probe, instance up (its floor)':<44} {spread_of(live)}"]


def main() -> None:
    require_store_option()
    pg = Postgres()
    scratch = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    h = Harness(scratch, "bench-cluster")
    report: list[str] = []
    try:
        report += store_comparison(pg) + [""]
        deployments = {count: Deployment(h, count, pg) for count in (1, 2)}
        report += spread(deployments, pg) + [""]
        report += takeover(deployments[2])
    except BaseException:
        print(f"cluster: failed; the servers' logs are under {h.logs}", file=sys.stderr)
        raise
    finally:
        h.teardown()  # copies ejabberd's logs into the scratch directory
        pg.close()
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nSeveral instances, on {platform()}{' (smoke sizes)' if SMOKE else ''}; load tool, "
          "ejabberd, PostgreSQL and the instances share the machine.\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
