"""End-to-end harness: services started by the tests (muc-host, Prosody), real XMPP clients
(slixmpp) driven synchronously from the test thread, and stanza helpers.

Every service a test starts is registered with its `Harness` and killed at teardown; every wait
is bounded and its failure message says what was awaited and what arrived instead.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO = Path(__file__).resolve().parents[2]
MUC_HOST = Path(os.environ.get("MUC_HOST_BIN", REPO / "target/release/muc-host"))
SHARED = Path(os.environ.get("MUC_SHARED_DIR", REPO.parent / "shared"))
PROSODY_SCRIPTS = SHARED / "conformance/prosody-scansion"
RESULTS = REPO / "target/e2e-results"

DOMAIN = "localhost"
MUC_DOMAIN = "conference.localhost"

# Namespaces.
CLIENT = "jabber:client"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_OWNER = MUC + "#owner"
MUC_ADMIN = MUC + "#admin"
DATA = "jabber:x:data"
DELAY = "urn:xmpp:delay"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"

# Bounds on every wait (seconds).
START_TIMEOUT = float(os.environ.get("E2E_START_TIMEOUT", 60))  # a cold start compiles the plugin
# A PostgreSQL URL: every muc-host runs on a fresh schema there instead of SQLite.
E2E_POSTGRES = os.environ.get("E2E_POSTGRES")
STANZA_TIMEOUT = float(os.environ.get("E2E_STANZA_TIMEOUT", 10))
LOGIN_TIMEOUT = float(os.environ.get("E2E_LOGIN_TIMEOUT", 15))
STOP_TIMEOUT = 10.0


class E2EFailure(AssertionError):
    pass


# --------------------------------------------------------------------------------------------
# Ports and processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, what: str, service: "Service | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and service.returncode() is not None:
            raise E2EFailure(f"{what}: exited with {service.returncode()} before listening on "
                             f"127.0.0.1:{port}\n{service.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise E2EFailure(f"{what}: nothing listening on 127.0.0.1:{port} after {timeout:.0f}s"
                     + (f"\n{service.tail()}" if service else ""))


class Service:
    """A child process in its own process group, its stdout collected line by line (and copied
    to a log file with its stderr)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, cwd: Optional[Path] = None,
                 env: Optional[dict] = None, extra_log: Optional[Path] = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.cwd = cwd
        self.env = env
        self.log_dir = log_dir
        self.extra_log = extra_log  # a log file the service writes itself (Prosody's)
        self.proc: Optional[subprocess.Popen] = None
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.starts = 0
        self._reader: Optional[threading.Thread] = None
        self._stdout_log = None
        self._stderr_path: Optional[Path] = None

    def start(self) -> "Service":
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.name}.{self.starts}"
        self._stderr_path = self.log_dir / f"{stem}.stderr"
        stderr = open(self._stderr_path, "wb")
        self._stdout_log = open(self.log_dir / f"{stem}.stdout", "w")
        with self.cond:
            self.lines = []
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
                                     start_new_session=True)
        stderr.close()
        self._reader = threading.Thread(target=self._read, args=(self.proc, self._stdout_log),
                                        daemon=True, name=f"{self.name}-stdout")
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen, log) -> None:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def returncode(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_line(self, pattern: str, timeout: float = START_TIMEOUT, start: int = 0) -> re.Match:
        """The first stdout line from index `start` on matching `pattern` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            index = start
            while True:
                while index < len(self.lines):
                    m = regex.search(self.lines[index])
                    index += 1
                    if m:
                        return m
                if self.returncode() is not None and (self._reader is None or not self._reader.is_alive()):
                    raise E2EFailure(f"{self.name} exited with {self.returncode()} before printing "
                                     f"a line matching {pattern!r}\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise E2EFailure(f"{self.name}: no line matching {pattern!r} within "
                                     f"{timeout:.0f}s\n{self.tail()}")
                self.cond.wait(min(left, 0.2))

    def line_count(self) -> int:
        with self.cond:
            return len(self.lines)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, and the exit code (SIGKILL and a failure past `timeout`)."""
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise E2EFailure(f"{self.name} still running {timeout:.0f}s after SIGTERM\n{self.tail()}")
        self._join_reader()
        return code

    def kill(self) -> None:
        """SIGKILL to the process group, and reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(2)
        if self._stdout_log is not None:
            self._stdout_log.close()
            self._stdout_log = None

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL after a short grace."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def stderr_text(self) -> str:
        """Everything the current (last started) process wrote on stderr so far: its log."""
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")

    def tail(self, n: int = 30) -> str:
        parts = []
        with self.cond:
            out = self.lines[-n:]
        if out:
            parts.append(f"--- {self.name} stdout (last {len(out)} lines):\n" + "\n".join(out))
        for path in [self._stderr_path, self.extra_log]:
            if path is not None and path.exists():
                text = path.read_text(errors="replace").splitlines()[-n:]
                if text:
                    parts.append(f"--- {path} (last {len(text)} lines):\n" + "\n".join(text))
        return "\n".join(parts) if parts else f"--- {self.name}: no output"


# --------------------------------------------------------------------------------------------
# muc-host


def require_muc_host() -> None:
    if not MUC_HOST.exists():
        raise E2EFailure(f"{MUC_HOST} is not built: run scripts/build first")


_warm_cache: Optional[Path] = None
_warm_lock = threading.Lock()


def warm_cache() -> Optional[Path]:
    """A data directory whose `cache/` holds the plugin compiled once (by `muc-host info`), copied
    into each test's data directory so that a fresh one does not recompile (the cache is keyed
    by the component's hash and the engine's configuration: a stale copy is only a miss)."""
    global _warm_cache
    with _warm_lock:
        if _warm_cache is None:
            base = Path(tempfile.mkdtemp(prefix="muc-e2e-warm-"))
            try:
                subprocess.run([str(MUC_HOST), "--data", str(base), "info"], capture_output=True,
                               timeout=300, check=True)
            except (subprocess.SubprocessError, OSError):
                shutil.rmtree(base, ignore_errors=True)
                return None
            _warm_cache = base
            atexit.register(shutil.rmtree, base, True)
        return _warm_cache


def postgres_schema(url: str) -> str:
    """A fresh schema in the PostgreSQL database at `url`, as a store URL that uses it."""
    schema = f"e2e_{uuid.uuid4().hex}"
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", f"CREATE SCHEMA {schema}"],
                   check=True, capture_output=True)
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


class MucHost:
    """`muc-host serve` on a data directory, restartable."""

    def __init__(self, harness: "Harness", data: Path, args: list[str], name: str = "muc-host"):
        self.harness = harness
        self.data = data
        self.args = list(args)
        self.component = "--component" in self.args
        self.port: Optional[int] = None
        self.metrics_port: Optional[int] = None
        self.http_port: Optional[int] = None
        if E2E_POSTGRES and "--store" not in self.args:
            self.args += ["--store", postgres_schema(E2E_POSTGRES)]
        self.service = Service(name, [MUC_HOST, "--data", data, "serve", *self.args],
                               harness.logs, cwd=REPO,
                               env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")})

    def start(self, timeout: float = START_TIMEOUT) -> "MucHost":
        self.service.start()
        if self.component:
            self.wait_component_connected(0, timeout)
        else:
            m = self.service.wait_line(r"muc-host: c2s listening on 127\.0\.0\.1:(\d+)", timeout)
            self.port = int(m.group(1))
        if "--metrics" in self.args:
            m = self.service.wait_line(r"muc-host: metrics listening on 127\.0\.0\.1:(\d+)", timeout)
            self.metrics_port = int(m.group(1))
        if "--http" in self.args:
            m = self.service.wait_line(r"muc-host: http listening on 127\.0\.0\.1:(\d+)", timeout)
            self.http_port = int(m.group(1))
        return self

    def wait_component_connected(self, start: int, timeout: float = START_TIMEOUT) -> re.Match:
        return self.service.wait_line(r"muc-host: component connected to (\S+) as (\S+)", timeout, start)

    def terminate(self) -> int:
        return self.service.terminate()

    def kill9(self) -> None:
        self.service.kill()

    def tail(self) -> str:
        return self.service.tail()

    def log(self) -> str:
        """The service's log (stderr) so far."""
        return self.service.stderr_text()


def ctl(data: Path, *args: str, timeout: float = 60,
        as_user: Optional[tuple[str, str]] = None) -> subprocess.CompletedProcess:
    """`muc-host --data DATA ctl ARGS...` (swap PATH, rollback, status) against the service on
    `data`; with `as_user=(user, group)`, run as that user through setpriv (needs root)."""
    argv = [str(MUC_HOST), "--data", str(data), "ctl", *map(str, args)]
    if as_user is not None:
        argv = ["setpriv", f"--reuid={as_user[0]}", f"--regid={as_user[1]}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def user_add(data: Path, jid: str, password: str) -> None:
    r = subprocess.run([str(MUC_HOST), "--data", str(data), "user", "add", jid, "--password", password],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise E2EFailure(f"muc-host user add {jid} exited with {r.returncode}\n{r.stdout}\n{r.stderr}")


def _accepts(pred: Callable[[ET.Element], bool], el: ET.Element) -> bool:
    """`pred(el)`, a predicate that fails on an unexpected stanza's shape counting as no."""
    try:
        return bool(pred(el))
    except Exception:
        return False


def start_component(h: "Harness", data: Path, port: int, secret: str, *args: str):
    """`muc-host serve` (with `args`) as the MUC component of the server whose component port is
    `port`, once it reports the link up."""
    muc = h.muc_host(data, "--component", f"127.0.0.1:{port}", "--component-secret", secret,
                     "--muc-domain", MUC_DOMAIN, "--domain", DOMAIN, *args).start()
    connected = muc.wait_component_connected(0)
    assert connected.group(1) == f"127.0.0.1:{port}" and connected.group(2) == MUC_DOMAIN, \
        f"unexpected line: {connected.group(0)!r}"
    return muc


def component_accepted(h: "Harness", port: int, secret: str) -> list[str]:
    """Whether the server on `port` takes a XEP-0114 handshake for the MUC domain with `secret`
    (slixmpp's own component client): the events seen, `session_start` among them on success."""
    import slixmpp
    events: list[str] = []

    def make():
        # Made in the loop's thread: slixmpp takes the running loop.
        c = slixmpp.ComponentXMPP(MUC_DOMAIN, secret, "127.0.0.1", port)
        c.add_event_handler("session_start", lambda _: events.append("session_start"))
        c.add_event_handler("disconnected", lambda e: events.append(f"disconnected: {e}"))
        c.connect()
        return c

    component = h.loop.call(make)
    try:
        deadline = time.monotonic() + LOGIN_TIMEOUT
        while "session_start" not in events and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(events)
    finally:
        h.loop.call(component.abort)


# --------------------------------------------------------------------------------------------
# Prosody

# "vcard": users' vCards (XEP-0054), which occupants fetch through the room (test_occupant_iqs.py).
PROSODY_MODULES_COMPONENT = ["roster", "saslauth", "tls", "disco", "ping", "vcard"]
# Prosody's own scansion configuration (spec/scansion/prosody.cfg.lua), less what 0.12 lacks
# (debug_reset) or needs more configuration (external_services); plus "tls", so that STARTTLS is
# offered (never required) with a self-signed certificate, as muc-host's listener offers it.
PROSODY_MODULES_SPEC = ["roster", "saslauth", "tls", "disco", "carbons", "pep", "private", "blocklist",
                        "vcard4", "vcard_legacy", "version", "uptime", "time", "ping", "register",
                        "mam", "server_contact_info", "lastactivity", "tombstones",
                        "user_account_management"]


def lua_list(items: Iterable[str]) -> str:
    return "{ " + "; ".join(f'"{i}"' for i in items) + " }"


class Prosody:
    """Debian's Prosody, configured in a directory of its own, on ephemeral ports.

    `muc="component"`: `conference.localhost` is an external component (secret `secret`);
    `muc="own"`: Prosody's own MUC, configured as Prosody's scansion suite configures it.
    """

    def __init__(self, harness: "Harness", muc: str, secret: str = "e2e-component-secret"):
        if shutil.which("prosody") is None:
            raise E2EFailure("prosody is not installed: run scripts/e2e-setup")
        self.harness = harness
        self.muc = muc
        self.secret = secret
        # Not under pytest's tmp_path: the prosody user must be able to reach it.
        self.dir = Path(tempfile.mkdtemp(prefix=f"muc-e2e-prosody-{muc}-"))
        harness.cleanups.append(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.c2s_port = free_port()
        self.component_port = free_port() if muc == "component" else None
        self.log = self.dir / "prosody.log"
        self.config = self.dir / "prosody.cfg.lua"
        (self.dir / "data").mkdir()
        (self.dir / "certs").mkdir()
        self.tls = _self_signed_into(self.dir / "certs")  # STARTTLS offered, not required
        self.config.write_text(self._config())
        argv = ["prosody", "-F", "--config", str(self.config)]
        as_prosody = os.geteuid() == 0 and _user_exists("prosody") and shutil.which("setpriv")
        if as_prosody:
            pw = pwd.getpwnam("prosody")
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, pw.pw_uid, pw.pw_gid)
            argv = ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", *argv]
        self.service = Service(f"prosody-{muc}", argv, harness.logs, cwd=self.dir, extra_log=self.log,
                               env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir)})

    def _config(self) -> str:
        d = self.dir
        common = f"""-- Generated by tests/e2e/harness.py
daemonize = false
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ debug = "{d}/prosody.log" }}
admins = {{ "admin@localhost" }}
modules_disabled = {{ "s2s" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
allow_registration = false
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "insecure"
insecure_open_authentication = "Yes please, I know what I'm doing!"
storage = "memory"
"""
        if self.muc == "component":
            return common + f"""modules_enabled = {lua_list(PROSODY_MODULES_COMPONENT)}
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "127.0.0.1" }}

VirtualHost "localhost"

Component "{MUC_DOMAIN}"
    component_secret = "{self.secret}"
"""
        return common + f"""modules_enabled = {lua_list(PROSODY_MODULES_SPEC)}
mam_smart_enable = true
hide_os_type = true

VirtualHost "localhost"

Component "{MUC_DOMAIN}" "muc"
    storage = "memory"
    admins = {{ "Admin@localhost" }}
    modules_enabled = {{ "muc_mam" }}
"""

    def start(self, timeout: float = 30) -> "Prosody":
        self.service.start()
        wait_for_port(self.c2s_port, timeout, "prosody c2s", self.service)
        if self.component_port:
            wait_for_port(self.component_port, timeout, "prosody component port", self.service)
        return self

    def kill9(self) -> None:
        self.service.kill()

    def stop(self) -> None:
        self.service.stop()

    def tail(self) -> str:
        return self.service.tail()


_cert_lock = threading.Lock()
_cert_dir: Optional[Path] = None


def _self_signed_into(certs: Path) -> bool:
    """Copies a self-signed certificate for localhost and conference.localhost (made once per
    run with openssl) into `certs` as Prosody looks for it; False when openssl is missing."""
    global _cert_dir
    with _cert_lock:
        if _cert_dir is None:
            if shutil.which("openssl") is None:
                return False
            made = Path(tempfile.mkdtemp(prefix="muc-e2e-cert-"))
            r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                                "-subj", "/CN=localhost",
                                "-addext", f"subjectAltName=DNS:localhost,DNS:{MUC_DOMAIN}",
                                "-keyout", str(made / "localhost.key"), "-out", str(made / "localhost.crt")],
                               capture_output=True, timeout=60)
            if r.returncode != 0:
                shutil.rmtree(made, ignore_errors=True)
                return False
            _cert_dir = made
            atexit.register(shutil.rmtree, made, True)
    for name in ["localhost.key", "localhost.crt"]:
        shutil.copy(_cert_dir / name, certs / name)
    return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --------------------------------------------------------------------------------------------
# Clients


class EventLoop:
    """An asyncio loop in a thread of its own, where every slixmpp client lives."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True, name="xmpp-loop")
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout: float):
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call(self, fn: Callable, *args, timeout: float = 10):
        async def wrapper():
            return fn(*args)
        return self.run(wrapper(), timeout)

    def close(self):
        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.sleep(0)
        try:
            self.run(cancel_all(), 5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ns(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def show(el: ET.Element, parent_ns: str = CLIENT) -> str:
    """A stanza as XML on one line, namespaces written as xmlns where they change."""
    ns = _ns(el.tag)
    attrs = "".join(f' {_local(k)}="{_attr(v)}"' for k, v in el.attrib.items())
    if ns != parent_ns:
        attrs = f' xmlns="{ns}"' + attrs
    inner = _text((el.text or "").strip()) + "".join(show(c, ns) + _text((c.tail or "").strip()) for c in el)
    name = _local(el.tag)
    return f"<{name}{attrs}>{inner}</{name}>" if inner else f"<{name}{attrs}/>"


class Client:
    """One XMPP client connection (slixmpp), used synchronously from the test.

    Everything the server sends (message, presence, iq) is kept in arrival order in `received`;
    `expect` takes the first stanza not yet taken that matches a predicate, waiting for it if
    needed; stanzas that do not match stay for later `expect`s (scansion's rule)."""

    def __init__(self, harness: "Harness", jid: str, password: str, port: int,
                 plaintext_ok: bool = False, name: Optional[str] = None, plugins: Iterable[str] = ()):
        self.harness = harness
        self.plugins = list(plugins)  # slixmpp plugins beyond the defaults (e.g. xep_0198)
        self.jid = jid
        self.password = password
        self.port = port
        self.plaintext_ok = plaintext_ok
        self.name = name or jid
        self.received: list[ET.Element] = []
        self.received_at: list[float] = []  # time.monotonic() of each, for measuring silences
        self.taken: set[int] = set()
        self.cond = threading.Condition()
        self.events: list[str] = []
        self.mechanism: Optional[str] = None
        self.offered_mechanisms: set[str] = set()
        self.tls = False
        self.full_jid: Optional[str] = None
        self.xmpp = None
        self._ids = 0

    # -- connection

    def _make(self):
        import slixmpp  # imported late: the venv has it, the collecting interpreter may not
        x = slixmpp.ClientXMPP(self.jid, self.password, loop=self.harness.loop.loop)
        x.enable_direct_tls = False  # slixmpp tries direct TLS first otherwise (interop.md)
        x.enable_starttls = True
        x.enable_plaintext = False
        x.ssl_context.check_hostname = False  # the bundled listener's certificate is self-signed
        x.ssl_context.verify_mode = ssl.CERT_NONE
        x.use_ipv6 = False
        if self.plaintext_ok:
            x.plugin["feature_mechanisms"].unencrypted_plain = True
        for plugin in self.plugins:
            x.register_plugin(plugin)
        x.add_filter("in", self._incoming)
        for event in ["session_start", "session_resumed", "sm_enabled", "sm_failed", "failed_auth", "failed_all_auth", "no_auth", "disconnected",
                      "connection_failed", "stream_error", "killed", "session_end"]:
            x.add_event_handler(event, self._on_event(event))
        x.add_event_handler("auth_success", self._on_auth_success)
        # Answer the server's pings and disco like a client does; ignore the rest.
        return x

    def _on_event(self, name):
        def handler(data=None):
            with self.cond:
                if name == "session_start":
                    self.full_jid = str(self.xmpp.boundjid)
                    self.tls = "starttls" in self.xmpp.features
                detail = ""
                if name in ("failed_auth",) and data is not None:
                    try:
                        detail = f": {data['condition']}"
                    except Exception:
                        pass
                elif name in ("disconnected", "connection_failed", "stream_error") and data is not None:
                    detail = f": {data}"
                self.events.append(name + detail)
                self.cond.notify_all()
        return handler

    def _on_auth_success(self, _stanza=None):
        mechs = self.xmpp.plugin["feature_mechanisms"]
        with self.cond:
            self.mechanism = mechs.mech.name if mechs.mech is not None else None
            self.offered_mechanisms = set(getattr(mechs, "mech_list", set()) or set())
            self.events.append("auth_success")
            self.cond.notify_all()

    def _incoming(self, stanza):
        el = stanza.xml
        if _ns(el.tag) == CLIENT and _local(el.tag) in ("message", "presence", "iq") \
                and el.find("{urn:ietf:params:xml:ns:xmpp-bind}bind") is None:
            import copy
            with self.cond:
                self.received.append(copy.deepcopy(el))
                self.received_at.append(time.monotonic())
                self.cond.notify_all()
        return stanza

    def _has_event(self, prefix: str) -> bool:
        return any(e == prefix or e.startswith(prefix + ":") for e in self.events)

    def try_connect(self, timeout: float = LOGIN_TIMEOUT) -> str:
        """Connects and logs in: 'session', 'auth-failed', or 'disconnected'/'timeout'."""
        def start():
            self.xmpp = self._make()
            self.xmpp.connect("127.0.0.1", self.port)
        self.harness.loop.call(start)
        self.harness.clients.append(self)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self._has_event("session_start"):
                    return "session"
                if self._has_event("failed_all_auth") or self._has_event("no_auth"):
                    return "auth-failed"
                if self._has_event("disconnected") and not self._has_event("auth_success"):
                    # A refused login may also end with the server closing the stream.
                    if self._has_event("failed_auth"):
                        return "auth-failed"
                    return "disconnected"
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                self.cond.wait(min(left, 0.2))

    def connect(self, timeout: float = LOGIN_TIMEOUT) -> "Client":
        outcome = self.try_connect(timeout)
        if outcome != "session":
            raise E2EFailure(f"{self.name}: login to 127.0.0.1:{self.port} as {self.jid} ended in "
                             f"{outcome!r}; client events: {self.events}\n{self.harness.service_tails()}")
        return self

    def reconnect(self, timeout: float = LOGIN_TIMEOUT) -> str:
        """Connects again with the same client (after `abort`): 'resumed' when stream management
        resumed the session (XEP-0198), 'session' when a new one began, else what happened."""
        with self.cond:
            seen = len(self.events)
        self.harness.loop.call(lambda: self.xmpp.connect("127.0.0.1", self.port))
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                new = self.events[seen:]
                if "session_resumed" in new:
                    return "resumed"
                if "session_start" in new:
                    return "session"
                left = deadline - time.monotonic()
                if left <= 0:
                    return f"timeout; events since: {new}"
                self.cond.wait(min(left, 0.2))

    def close(self) -> None:
        """A clean logout: the stream is closed, waiting briefly for the server's close."""
        if self.xmpp is None:
            return
        x = self.xmpp

        async def disconnect():
            x.cancel_connection_attempt()
            await asyncio.wait_for(asyncio.shield(x.disconnect(wait=2)), 3)
        try:
            self.harness.loop.run(disconnect(), 5)
        except Exception:
            self.abort()

    def abort(self) -> None:
        """The socket closed with no unavailable presence and no stream close."""
        if self.xmpp is None:
            return
        x = self.xmpp

        def do_abort():
            x.cancel_connection_attempt()
            if x.transport is not None:
                x.transport.abort()
        try:
            self.harness.loop.call(do_abort)
        except Exception:
            pass

    def wait_disconnected(self, timeout: float = STANZA_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self._has_event("disconnected"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise E2EFailure(f"{self.name}: still connected after {timeout:.0f}s; events {self.events}")
                self.cond.wait(min(left, 0.2))

    # -- sending

    def next_id(self, prefix: str = "e2e") -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def send(self, xml: str) -> None:
        ET.fromstring(xml)  # well-formed, or the test is wrong: fail here, not in the stream
        x = self.xmpp
        if x is None:
            raise E2EFailure(f"{self.name}: not connected")
        self.harness.loop.call(x.send_raw, xml)

    def iq(self, xml: str, timeout: float = STANZA_TIMEOUT) -> ET.Element:
        """Sends an iq (its id is read from it) and returns the answer."""
        sent = ET.fromstring(xml)
        iq_id = sent.get("id")
        assert iq_id, "an iq needs an id"
        self.send(xml)
        return self.expect(lambda s: _local(s.tag) == "iq" and s.get("id") == iq_id
                           and s.get("type") in ("result", "error"),
                           f"answer to iq {iq_id}", timeout)

    def iq_ok(self, xml: str, timeout: float = STANZA_TIMEOUT) -> ET.Element:
        answer = self.iq(xml, timeout)
        if answer.get("type") != "result":
            raise E2EFailure(f"{self.name}: iq refused:\n  sent:     {xml.strip()}\n  answered: {show(answer)}")
        return answer

    # -- receiving

    def expect(self, pred: Callable[[ET.Element], bool], what: str,
               timeout: float = STANZA_TIMEOUT) -> ET.Element:
        deadline = time.monotonic() + timeout
        with self.cond:
            index = 0
            while True:
                while index < len(self.received):
                    if index not in self.taken and _accepts(pred, self.received[index]):
                        self.taken.add(index)
                        return self.received[index]
                    index += 1
                left = deadline - time.monotonic()
                gone = self._has_event("disconnected")  # nothing more can arrive
                if left <= 0 or gone:
                    raise E2EFailure(f"{self.name}: no {what} "
                                     + ("before the connection closed" if gone else f"within {timeout:.0f}s")
                                     + ".\n"
                                     f"Received and not taken:\n{self._pending_text()}\n"
                                     f"client events: {self.events}")
                self.cond.wait(min(left, 0.2))

    def expect_nothing(self, pred: Callable[[ET.Element], bool], what: str, within: float = 1.0) -> None:
        time.sleep(within)
        with self.cond:
            for i, el in enumerate(self.received):
                if i not in self.taken and pred(el):
                    raise E2EFailure(f"{self.name}: unexpected {what}: {show(el)}")

    def position(self, el: ET.Element) -> int:
        """Where `el` arrived among everything this client received."""
        with self.cond:
            for i, other in enumerate(self.received):
                if other is el:
                    return i
        raise ValueError("not a received stanza")

    def pending(self) -> list[ET.Element]:
        with self.cond:
            return [el for i, el in enumerate(self.received) if i not in self.taken]

    def take_all(self, pred: Callable[[ET.Element], bool]) -> list[ET.Element]:
        """Takes every stanza received so far that matches."""
        out = []
        with self.cond:
            for i, el in enumerate(self.received):
                if i not in self.taken and _accepts(pred, el):
                    self.taken.add(i)
                    out.append(el)
        return out

    def _pending_text(self, n: int = 25) -> str:
        items = [show(el) for el in self.pending()][-n:]
        return "\n".join("  " + i for i in items) if items else "  (nothing)"


# --------------------------------------------------------------------------------------------
# Stanza helpers


def kind(el: ET.Element) -> str:
    return _local(el.tag)


def child(el: ET.Element, name: str, ns: str) -> Optional[ET.Element]:
    return el.find(f"{{{ns}}}{name}")


def muc_user(el: ET.Element) -> Optional[ET.Element]:
    return child(el, "x", MUC_USER)


def statuses(el: ET.Element) -> set[int]:
    x = muc_user(el)
    if x is None:
        return set()
    return {int(s.get("code")) for s in x.findall(f"{{{MUC_USER}}}status") if s.get("code", "").isdigit()}


def muc_item(el: ET.Element) -> dict:
    x = muc_user(el)
    item = None if x is None else x.find(f"{{{MUC_USER}}}item")
    return {} if item is None else dict(item.attrib)


def body(el: ET.Element) -> Optional[str]:
    b = child(el, "body", CLIENT)
    return None if b is None else (b.text or "")


def subject(el: ET.Element) -> Optional[str]:
    s = child(el, "subject", CLIENT)
    return None if s is None else (s.text or "")


def delayed(el: ET.Element) -> bool:
    return child(el, "delay", DELAY) is not None


def error_condition(el: ET.Element) -> Optional[str]:
    err = child(el, "error", CLIENT)
    if err is None:
        return None
    for c in err:
        if _ns(c.tag) == STANZAS and _local(c.tag) != "text":
            return _local(c.tag)
    return "?"


def is_presence(el, frm: Optional[str] = None, type_: Optional[str] = None) -> bool:
    return (kind(el) == "presence" and (frm is None or el.get("from") == frm)
            and el.get("type") == type_)


def form_fields(form: ET.Element) -> dict[str, list[str]]:
    out = {}
    for f in form.findall(f"{{{DATA}}}field"):
        if f.get("var") is None:  # fixed text
            continue
        out[f.get("var")] = [v.text or "" for v in f.findall(f"{{{DATA}}}value")]
    return out


def submit_form(fields: dict[str, str | list[str]], form_type: str = ROOMCONFIG) -> str:
    parts = [f'<field var="FORM_TYPE"><value>{form_type}</value></field>']
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        parts.append(f'<field var="{_attr(var)}">' + "".join(f"<value>{_text(v)}</value>" for v in values)
                     + "</field>")
    return f'<x xmlns="{DATA}" type="submit">' + "".join(parts) + "</x>"


def _text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(s: str) -> str:
    return _text(s).replace('"', "&quot;")


def text(s: str) -> str:
    return _text(s)


# --------------------------------------------------------------------------------------------
# The harness a test gets


class Harness:
    def __init__(self, tmp: Path, name: str):
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.loop = EventLoop()
        self.services: list[Service] = []
        self.clients: list[Client] = []
        self.cleanups: list[Callable[[], None]] = []
        self.muc_hosts: list[MucHost] = []
        self.prosodies: list[Prosody] = []

    # services

    def data_dir(self, name: str = "data") -> Path:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        warm = warm_cache()
        if warm is not None and (warm / "cache").is_dir() and not (d / "cache").exists():
            shutil.copytree(warm / "cache", d / "cache")
        return d

    def muc_host(self, data: Path, *args: str, name: str = "muc-host") -> MucHost:
        require_muc_host()
        host = MucHost(self, data, list(args), name)
        self.services.append(host.service)
        self.muc_hosts.append(host)
        return host

    def bundled(self, data: Path, *args: str, name: str = "muc-host") -> MucHost:
        """`muc-host serve` with its own c2s listener on an ephemeral port."""
        return self.muc_host(data, "--domain", DOMAIN, "--muc-domain", MUC_DOMAIN,
                             "--c2s", "127.0.0.1:0", *args, name=name).start()

    def prosody(self, muc: str) -> Prosody:
        p = Prosody(self, muc)
        self.services.append(p.service)
        self.prosodies.append(p)
        return p

    def client(self, jid: str, password: str, port: int, **kw) -> Client:
        return Client(self, jid, password, port, **kw)

    def service_tails(self) -> str:
        return "\n".join(s.tail(15) for s in self.services if s.proc is not None)

    def teardown(self) -> None:
        for c in self.clients:
            c.abort()
        self.loop.close()
        for s in self.services:
            try:
                s.stop()
            except Exception:
                pass
        for f in reversed(self.cleanups):
            try:
                f()
            except Exception:
                pass


def wait_until(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise E2EFailure(f"timed out after {timeout:.0f}s waiting for {what}")
