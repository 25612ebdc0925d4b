"""Scale: how muc-host's memory and start-up follow the rooms in use, not the rooms stored, and
how one very large room behaves. Started by `bench/scale`. Figures only; Python's standard
library and muc-bench.

1. A template room is made through the service itself (persistent, one message of history), then
   copied in the SQLite store to N rooms, key for key, so the copies are in the plugin's own
   layout (wit/STORAGE.md).
2. Start-up time (spawn to c2s listening, compiled plugin cached) and resident memory: empty
   store against N stored rooms.
3. Memory per idle occupant (one room, many silent occupants) and per active room (stored rooms
   woken by one occupant each), from the server's resident memory before and after the joins.
4. Idle rooms leave memory: the `muc_rooms` gauge (rooms in memory) after the occupants left and
   the idle time passed.
5. One room of 5,000 occupants with `presencebroadcast` = moderator: join time, deliveries.
"""

import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from duel import MUC, MUC_BENCH, Server, free_port, muc_host, platform  # noqa: E402

SMOKE = "--smoke" in sys.argv
STORED = 2_000 if SMOKE else 100_000
IDLE_OCCUPANTS = 100 if SMOKE else 2_000
ACTIVE_ROOMS = 100 if SMOKE else 2_000
LARGE_ROOM = 200 if SMOKE else 5_000
IDLE_SECONDS = 3 if SMOKE else 10
TEMPLATE = f"tpl0@{MUC}"


def bench(server: Server, *args: str) -> dict:
    argv = [str(MUC_BENCH), "--server", f"127.0.0.1:{server.port}", "--json", "--timeout", "900",
            *[a for pid in server.pids() for a in ("--pid", str(pid))], *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"scale: muc-bench {' '.join(args)}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def warm(server: Server) -> None:
    """An unmeasured round: the threads' first allocations are not an occupant's, and memory
    the allocator kept from an earlier run would hide one."""
    bench(server, "--rooms", "10", "--occupants", "10", "--messages", "5",
          "--room-prefix", "warm", "--user-prefix", "warm")


def resident_mib(server: Server) -> float:
    status = Path(f"/proc/{server.pids()[0]}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kib / 1024


def rooms_in_memory(metrics_port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("muc_rooms ")))


def started(data: Path, *extra: str) -> tuple[Server, float]:
    """muc-host on `data`, and the seconds from spawn to its c2s port accepting."""
    begun = time.perf_counter()
    server = muc_host(extra=extra, data=data)
    return server, time.perf_counter() - begun


def stop(server: Server) -> None:
    """Stops the process, keeping the data (Server.stop removes its directory)."""
    process = server.processes[0]
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def make_stored_rooms(data: Path) -> int:
    """The template room, made through the service, then copied to STORED rooms in the store."""
    server, _ = started(data)
    bench(server, "--rooms", "1", "--occupants", "1", "--messages", "1", "--room-prefix", "tpl",
          "--user-prefix", "owner", "--room-config", "muc#roomconfig_persistentroom=1")
    stop(server)
    db = sqlite3.connect(data / "muc.sqlite3")
    prefix = f"room/{TEMPLATE}/"
    rows = db.execute("SELECT key, value FROM durable WHERE key >= ? AND key < ?",
                      (prefix, prefix[:-1] + "0")).fetchall()
    if not rows:
        raise SystemExit("scale: the template room was not stored")
    old = TEMPLATE.encode()
    with db:
        db.executemany("INSERT INTO durable VALUES (?, ?)", (
            (key.replace(TEMPLATE, f"stored{n}@{MUC}"),
             value.replace(old, f"stored{n}@{MUC}".encode()) if isinstance(value, bytes) else value)
            for n in range(STORED) for key, value in rows))
    db.close()
    return len(rows)


def main() -> None:
    report: list[tuple[str, str]] = []
    scratch = Server("scale", "")  # a directory for the stores, removed at the end
    servers: list[Server] = []
    try:
        # Start-up, empty store: the first start compiles the plugin into the cache.
        empty = scratch.dir / "empty"
        server, _ = started(empty)
        stop(server)
        server, empty_start = started(empty)
        servers.append(server)
        time.sleep(1)
        empty_rss = resident_mib(server)
        stop(server)

        stored = scratch.dir / "stored"
        keys_per_room = make_stored_rooms(stored)
        size = (stored / "muc.sqlite3").stat().st_size / 2**20
        metrics_port = free_port()
        server, stored_start = started(stored, "--metrics", f"127.0.0.1:{metrics_port}",
                                       "--room-idle-seconds", str(IDLE_SECONDS))
        servers.append(server)
        time.sleep(1)
        stored_rss = resident_mib(server)
        report += [
            ("stored rooms", f"{STORED} ({keys_per_room} keys each, store {size:.0f} MiB)"),
            ("start-up, empty store", f"{empty_start:.3f} s, {empty_rss:.1f} MiB resident"),
            (f"start-up, {STORED} rooms stored", f"{stored_start:.3f} s, {stored_rss:.1f} MiB resident"),
            ("rooms in memory after start", str(rooms_in_memory(metrics_port))),
        ]

        # Each measurement on a fresh process, after an unmeasured round.
        warm(server)
        # Presence to moderators only: the joins cost O(n), the occupants cost the same memory.
        idle = bench(server, "--rooms", "1", "--occupants", str(IDLE_OCCUPANTS), "--messages", "1",
                     "--room-prefix", "idle", "--user-prefix", "idle",
                     "--room-config", "muc#roomconfig_presencebroadcast=moderator")
        per_occupant = (idle["server_resident_mib_joined"] - idle["server_resident_mib_before_logins"]) \
            * 1024 / IDLE_OCCUPANTS
        stop(server)
        server, _ = started(stored, "--metrics", f"127.0.0.1:{metrics_port}",
                            "--room-idle-seconds", str(IDLE_SECONDS))
        servers.append(server)
        warm(server)
        active = bench(server, "--existing-rooms", "--rooms", str(ACTIVE_ROOMS), "--occupants", "1",
                       "--messages", "1", "--room-prefix", "stored", "--user-prefix", "owner")
        per_room = (active["server_resident_mib_joined"]
                    - active["server_resident_mib_before_logins"]) * 1024 / ACTIVE_ROOMS
        woken = rooms_in_memory(metrics_port)
        time.sleep(IDLE_SECONDS + 2)
        asleep = rooms_in_memory(metrics_port)
        report += [
            (f"per idle occupant ({IDLE_OCCUPANTS} in one room)",
             f"{per_occupant:.1f} KiB (its c2s session included)"),
            (f"per active room ({ACTIVE_ROOMS} stored rooms woken)",
             f"{per_room:.1f} KiB (with its one occupant and session), "
             f"woken in {active['join_seconds']:.2f} s"),
            ("rooms in memory, woken", str(woken)),
            (f"rooms in memory, {IDLE_SECONDS} s idle later", str(asleep)),
            ("resident after the idle rooms left", f"{resident_mib(server):.1f} MiB"),
        ]
        stop(server)

        server, _ = started(scratch.dir / "large")
        servers.append(server)
        large = bench(server, "--rooms", "1", "--occupants", str(LARGE_ROOM), "--senders", "1",
                      "--messages", "5", "--concurrency", "100", "--room-prefix", "large",
                      "--user-prefix", "large",
                      "--room-config", "muc#roomconfig_presencebroadcast=moderator")
        report += [
            (f"one room of {LARGE_ROOM} (presence to moderators)",
             f"joined in {large['join_seconds']:.2f} s "
             f"({large['server_cpu_seconds_joins']:.2f} s server CPU)"),
            ("  its messages",
             f"{large['delivered']} deliveries, {large['deliveries_per_second']:.0f}/s, "
             f"p50 {large['latency_p50_ms']:.1f} ms, p99 {large['latency_p99_ms']:.1f} ms"),
            ("  resident", f"{large['server_resident_mib']:.1f} MiB"),
        ]
    finally:
        for server in servers:
            server.stop()
        scratch.stop()
    print(f"\nmuc-host scale on {platform()}{' (smoke sizes)' if SMOKE else ''}:\n")
    for name, value in report:
        print(f"  {name:<48} {value}")


if __name__ == "__main__":
    main()
