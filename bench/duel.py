"""The duel: the same muc-bench scenarios against muc-host and Debian's Prosody (and ejabberd
where it installs), on this machine, in one run; one table with each server's figures and our
ratio to each. Started by `bench/duel` (which installs what is missing). Python's standard
library only.

Servers (each on ephemeral ports, in a temporary directory, stopped at the end):
- muc-host in bundled mode with its shipped defaults (durable SQLite store, group commit), but
  its flood limits lifted (`NO_FLOOD_LIMITS`), as the others run without theirs;
- the same with the MUC logic linked into the host (`serve --native-plugin`): what WebAssembly
  costs, end to end;
- muc-host in component mode behind Prosody (the production shape; both processes counted);
- Prosody 0.12 with its own MUC (history in memory), insecure auth, no rate limits;
- ejabberd 23.01 with its own MUC (history in memory), anonymous logins, no shapers, where it
  is installed.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUC_HOST = ROOT / "target/release/muc-host"
# The scenarios send thousands of messages a second from one sender, far past muc-host's default
# per-connection byte rate and per-occupant message rate (README "Flood limits"); Prosody runs
# without mod_limits and ejabberd without shapers, so muc-host runs without its limits too.
NO_FLOOD_LIMITS = ("--client-bytes-per-second", "0", "--room-messages-per-second", "0")
MUC_BENCH = ROOT / "target/release/muc-bench"
MUC = "conference.localhost"

# name, muc-bench arguments. Message counts keep each run to seconds on 2 cores, and give
# muc-host about a CPU second or more where it can (CPU time is counted in 10 ms ticks).
FULL = [
    ("10 occupants, 1 sender", ["--occupants", "10", "--senders", "1", "--messages", "8000"]),
    ("10 occupants, 10 senders", ["--occupants", "10", "--senders", "10", "--messages", "1000"]),
    ("100 occupants, 1 sender", ["--occupants", "100", "--senders", "1", "--messages", "1500"]),
    ("100 occupants, 10 senders", ["--occupants", "100", "--senders", "10", "--messages", "250"]),
    ("500 occupants, 1 sender", ["--occupants", "500", "--senders", "1", "--messages", "400"]),
    ("500 occupants, 10 senders", ["--occupants", "500", "--senders", "10", "--messages", "50"]),
    ("1000 rooms of 5", ["--rooms", "1000", "--occupants", "5", "--senders", "1", "--messages", "10"]),
    ("join storm, 500 into one room", ["--occupants", "500", "--senders", "1", "--messages", "1"]),
]
SMOKE = [
    ("10 occupants, 2 senders", ["--occupants", "10", "--senders", "2", "--messages", "20"]),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, what: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"duel: {what} did not listen on {port}")


def proc_stats():
    """(pid, the fields of /proc/PID/stat after the command name: fields[0] is the state) of
    every process running now."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        yield int(entry.name), fields


def cpu_seconds(groups: set[int]) -> float:
    """CPU seconds used so far by every process in the process `groups`."""
    total = 0
    for _, fields in proc_stats():
        if int(fields[2]) in groups:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(groups: set[int], timeout: float = 60) -> None:
    """Returns once the process `groups` (every server's) are idle (under 5% of a core for a
    second): a server still cleaning up after its run (Prosody sends the leaving occupants'
    presences to those still in the room) would otherwise take CPU from the next server's run."""
    deadline = time.time() + timeout
    used = cpu_seconds(groups)
    while time.time() < deadline:
        time.sleep(1)
        now = cpu_seconds(groups)
        if now - used < 0.05:
            return
        used = now
    print(f"duel: servers still busy after {timeout:.0f} s; running anyway", file=sys.stderr)


class Server:
    """A server under test: its processes, the c2s port to load, what it persists."""

    def __init__(self, name: str, persists: str):
        self.name = name
        self.persists = persists
        self.processes: list[subprocess.Popen] = []
        self.dir = Path(tempfile.mkdtemp(prefix=f"duel-{name.split()[0]}-"))
        os.chmod(self.dir, 0o755)
        self.port = 0

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        # Each server leads a process group of its own (Erlang's helpers included).
        for process in reversed(self.processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


NATIVE = "muc-host, MUC logic native"


def muc_host(component_port: int | None = None, secret: str = "", extra: tuple[str, ...] = (),
             data: Path | None = None, native: bool = False) -> Server:
    """muc-host serve with `extra` flags, on `data` (default: a fresh directory); `native`: with
    the MUC logic linked in instead of the component (what WebAssembly costs)."""
    if component_port:
        server = Server("muc-host behind Prosody", "")
        argv = [str(MUC_HOST), "--data", str(server.dir / "data"), "serve", *NO_FLOOD_LIMITS,
                "--component", f"127.0.0.1:{component_port}", "--component-secret", secret]
    else:
        server = (Server(NATIVE, "the same as muc-host") if native else
                  Server("muc-host", "MUC history: SQLite for persistent rooms (these are temporary: memory)"))
        server.port = free_port()
        argv = [str(MUC_HOST), "--data", str(data or server.dir / "data"), "serve", "--insecure-auth",
                *NO_FLOOD_LIMITS,
                "--c2s", f"127.0.0.1:{server.port}", *(("--native-plugin",) if native else ()), *extra]
    server.processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                             stderr=open(server.dir / "log", "w"),
                                             start_new_session=True))
    if server.port:
        wait_for_port(server.port, server.name)
    return server


def prosody(own_muc: bool, secret: str = "duel-secret", archive: bool = False) -> tuple[Server, int]:
    """Prosody with its own MUC (`archive`: and its room archive, mod_muc_mam, on the internal
    file store) or as the front of muc-host (component port returned)."""
    server = Server("prosody" if own_muc else "prosody (c2s for muc-host)",
                    "MUC history: memory" if own_muc else "")
    server.port = free_port()
    component_port = free_port()
    d = server.dir
    (d / "data").mkdir()
    muc = (f'Component "{MUC}" "muc"\n    muc_room_default_history_length = 20\n'
           + ('    modules_enabled = { "muc_mam" }\n    storage = { muc_log = "internal" }\n'
              if archive else "")
           if own_muc else
           f'Component "{MUC}"\n    component_secret = "{secret}"\n')
    (d / "prosody.cfg.lua").write_text(f"""-- Generated by bench/duel.py
daemonize = false
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ warn = "{d}/prosody.log" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping" }}
modules_disabled = {{ "s2s" }}
c2s_ports = {{ {server.port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
component_ports = {{ {component_port} }}
component_interfaces = {{ "127.0.0.1" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "insecure"
insecure_open_authentication = "Yes please, I know what I'm doing!"
storage = "memory"

VirtualHost "localhost"

{muc}""")
    argv = ["prosody", "-F", "--config", str(d / "prosody.cfg.lua")]
    if os.geteuid() == 0:
        user = pwd.getpwnam("prosody")
        for path in [d, *d.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        argv = ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", *argv]
    server.processes.append(subprocess.Popen(argv, cwd=d, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, start_new_session=True,
                                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                                  "HOME": str(d)}))
    wait_for_port(server.port, "prosody")
    return server, component_port


def ejabberd() -> Server | None:
    """Debian's ejabberd started as its tests start it (tests/e2e/ejabberd.py): `erl -s ejabberd`
    with the environment ejabberdctl gives it, as the ejabberd user, no epmd."""
    ctl = Path(shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl")
    if not ctl.exists():
        return None
    script = ctl.read_text(errors="replace")
    found = {name: (m.group(1) if (m := re.search(rf"^\s*{name}=['\"]?([^'\"\n]+)", script, re.M)) else None)
             for name in ("ERL", "ERL_LIBS")}
    erl = found["ERL"] or shutil.which("erl") or "/usr/bin/erl"
    libs = found["ERL_LIBS"] or next((str(p.parent.parent) for p in Path("/usr/lib").glob("*/ejabberd-*/ebin")), None)
    if not libs or not Path(erl).exists():
        return None
    server = Server("ejabberd", "MUC history: memory")
    server.port = free_port()
    d = server.dir
    for sub in ("etc", "spool", "logs"):
        (d / sub).mkdir()
    (d / "etc/ejabberd.yml").write_text(f"""# Generated by bench/duel.py
loglevel: warning
log_rotate_count: 0
hosts: [localhost]
listen:
  -
    port: {server.port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    max_stanza_size: 262144
auth_method: [anonymous]
anonymous_protocol: both
allow_multiple_connections: true
s2s_access: none
modules:
  mod_disco: {{}}
  mod_muc:
    host: "{MUC}"
    access_create: all
    max_users: 10000
    max_user_conferences: 10000
    history_size: 20
    default_room_options:
      max_users: 10000
      mam: false
""")
    (d / "etc/inetrc").write_text('{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n')
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(d), "LANG": "C.UTF-8",
           "ERL_LIBS": libs, "ERL_INETRC": str(d / "etc/inetrc"), "ERL_CRASH_DUMP_BYTES": "0",
           "EJABBERD_CONFIG_PATH": str(d / "etc/ejabberd.yml"),
           "EJABBERD_LOG_PATH": str(d / "logs/ejabberd.log")}
    argv = [erl, "-sname", f"duel{os.getpid()}@localhost", "-setcookie", "duel",
            "-erl_epmd_port", str(free_port()), "-start_epmd", "false",
            "-mnesia", "dir", f'"{d / "spool"}"', "-s", "ejabberd", "-noinput"]
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("ejabberd")
        except KeyError:
            return None
        for path in [d, *d.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--", *argv]
    server.processes.append(subprocess.Popen(argv, cwd=d / "spool", env=env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, start_new_session=True))
    wait_for_port(server.port, "ejabberd", 60)
    return server


def bench(server: Server, pids: list[int], name: str, args: list[str], run: int) -> dict:
    argv = [str(MUC_BENCH), "--server", f"127.0.0.1:{server.port}", "--json", "--label", name,
            "--room-prefix", f"r{run}x", "--user-prefix", f"u{run}x", "--timeout", "300",
            *[a for pid in pids for a in ("--pid", str(pid))], *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1][:80]}
    return json.loads(done.stdout)


def main() -> None:
    scenarios = SMOKE if "--smoke" in sys.argv else FULL
    servers: list[tuple[Server, list[int]]] = []
    cleanup: list[Server] = []
    try:
        ours = muc_host()
        cleanup.append(ours)
        servers.append((ours, ours.pids()))
        native = muc_host(native=True)
        cleanup.append(native)
        servers.append((native, native.pids()))
        if shutil.which("prosody"):
            theirs, _ = prosody(own_muc=True)
            cleanup.append(theirs)
            servers.append((theirs, theirs.pids()))
            front, component_port = prosody(own_muc=False)
            cleanup.append(front)
            behind = muc_host(component_port, "duel-secret")
            cleanup.append(behind)
            time.sleep(1.5)  # the component link
            behind.port = front.port
            behind.persists = ours.persists
            servers.append((behind, front.pids() + behind.pids()))
        theirs_too = ejabberd()
        if theirs_too:
            cleanup.append(theirs_too)
            # Before the last row, muc-host behind Prosody, if it runs.
            last = len(servers) - 1 if shutil.which("prosody") else len(servers)
            servers.insert(last, (theirs_too, theirs_too.pids()))
        results: dict[str, dict[str, dict]] = {}
        run = 0
        # A first, discarded round: servers that just started (Erlang's especially) are still
        # warming up, and would share the machine with the first measured run.
        for server, pids in servers:
            run += 1
            bench(server, pids, "warm-up", SMOKE[0][1], run)
        for name, args in scenarios:
            results[name] = {}
            for server, pids in servers:
                run += 1
                wait_until_quiet({pid for _, pids in servers for pid in pids})
                results[name][server.name] = bench(server, pids, name, args, run)
                print(f"duel: {name} / {server.name}: {json.dumps(results[name][server.name])}",
                      file=sys.stderr, flush=True)
        table(results, [s for s, _ in servers])
    finally:
        for server in cleanup:
            server.stop()


def table(results: dict, servers: list[Server]) -> None:
    cpu = platform()
    print(f"\nmuc-bench duel on {cpu}; load tool and servers share the machine.")
    print("CPU = server CPU seconds per 1,000,000 deliveries (all its processes); "
          "latency = send to receive, ms; ratio = theirs / ours (above 1: ours is better);\n"
          f"WebAssembly/native = muc-host's CPU over the same build's with the MUC logic linked in "
          f"({NATIVE}).\n")
    ours = servers[0].name
    header = f"{'scenario':<32} {'server':<26} {'deliv/s':>9} {'CPU/1M':>8} {'p50':>7} {'p99':>7} {'max':>7} {'join s':>7} {'RSS MiB':>8}"
    print(header)
    print("-" * len(header))
    for name, by_server in results.items():
        for server in servers:
            r = by_server.get(server.name, {})
            if "error" in r:
                print(f"{name:<32} {server.name:<26} error: {r['error']}")
                continue
            print(f"{name:<32} {server.name:<26} {r['deliveries_per_second']:>9.0f} "
                  f"{r['server_cpu_seconds_per_million'] or 0:>8.2f} {r['latency_p50_ms']:>7.2f} "
                  f"{r['latency_p99_ms']:>7.2f} {r['latency_max_ms']:>7.2f} {r['join_seconds']:>7.2f} "
                  f"{r['server_resident_mib']:>8.1f}")
        mine = by_server.get(ours, {})
        for server in servers[1:]:
            r = by_server.get(server.name, {})
            if "error" in r or "error" in mine or not r:
                continue
            # CPU time is counted in 10 ms ticks: a run too short to measure says so.
            measured = min(mine.get("server_cpu_seconds") or 0, r.get("server_cpu_seconds") or 0) >= 0.1
            if server.name == NATIVE:
                cpu = (f"x{mine['server_cpu_seconds_per_million'] / r['server_cpu_seconds_per_million']:.2f}"
                       if measured else "n/a (run too short)")
                print(f"{'':<32} {'WebAssembly/native':<26} CPU/1M {cpu}")
                continue
            if server.name.startswith("muc-host"):
                continue
            cpu = (f"x{r['server_cpu_seconds_per_million'] / mine['server_cpu_seconds_per_million']:.2f}"
                   if measured else "n/a (run too short)")
            p99 = r["latency_p99_ms"] / max(mine["latency_p99_ms"], 1e-3)
            print(f"{'':<32} {'theirs/ours, ' + server.name:<26} CPU/1M {cpu}, p99 x{p99:.2f}")
    print("\nWhat each persists:")
    for server in servers:
        if server.persists:
            print(f"  {server.name}: {server.persists}")


def platform() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{os.cpu_count()} x {model}"


if __name__ == "__main__":
    main()
