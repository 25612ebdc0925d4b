"""Debian's ejabberd (23.01) for the end-to-end tests: a private instance per test, with
`conference.localhost` as an external component (XEP-0114) for muc-host to serve.

Each instance has its own directory (config, Mnesia spool, logs), its own Erlang node name
(`ejabberd_e2e_<pid>_<n>@localhost`) and random cookie, and ephemeral ports for c2s (plain, no
TLS), the component listener and Erlang distribution. No epmd is involved: the node listens for
distribution on a fixed port of its own (`-erl_epmd_port P -start_epmd false`), and the control
node that registers accounts (`ejabberd_ctl register`, what `ejabberdctl register` runs) dials
that port directly (`-dist_listen false`). So nothing outlives the instance's process group.

The node is `erl -s ejabberd` started directly with the arguments and environment that Debian's
`ejabberdctl foreground` gives it (ejabberdctl itself insists on root or the ejabberd user and
goes through `su`): as root it runs as the `ejabberd` user via `setpriv`, otherwise as the
current user. It starts in about a second, is ready when its c2s and component ports accept,
and stops gracefully on SIGTERM (about 2 s); it can be started again on the same ports, and its
accounts (Mnesia disc tables) survive that.

With `component_number=N` the MUC domain is balanced over N component connections by room
(`domain_balancing`, `type: bare_destination`): ejabberd keeps N slots for the domain, a connection
takes a vacant one when it authenticates, and a stanza goes to slot
`erlang:phash2(BareTo, N) + 1` (`ejabberd_router:balancing_route/4`); `slots_of` computes that
with this Erlang, so a test can say which connection must serve which room.

Missing ejabberd (or Erlang) is a pytest skip with the reason.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest

from harness import DOMAIN, MUC_DOMAIN, E2EFailure, Service, free_port, wait_for_port

EJABBERDCTL = Path(os.environ.get("EJABBERDCTL", shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"))
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
PASSWORD = "e2e-password"

_instances = itertools.count(1)


def _from_ejabberdctl(name: str) -> Optional[str]:
    """A variable as Debian's ejabberdctl sets it (`ERL="/usr/bin/erl"`, `ERL_LIBS='...'`)."""
    try:
        script = EJABBERDCTL.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(rf"^\s*{name}=['\"]?([^'\"\n]+)['\"]?\s*$", script, re.M)
    return m.group(1) if m else None


def find_ejabberd() -> tuple[str, str]:
    """(erl, ERL_LIBS), or a pytest skip saying what is missing."""
    if not EJABBERDCTL.exists():
        pytest.skip(f"ejabberd is not installed ({EJABBERDCTL} is missing; apt-get install -y ejabberd)")
    erl = _from_ejabberdctl("ERL") or shutil.which("erl") or "/usr/bin/erl"
    if not Path(erl).exists():
        pytest.skip(f"ejabberd is installed but Erlang's {erl} is missing")
    libs = _from_ejabberdctl("ERL_LIBS")
    candidates = [Path(libs)] if libs else []
    candidates += [Path(p).parent for p in sorted(map(str, Path("/usr/lib").glob("*/ejabberd-*/ebin")))]
    for lib in candidates:
        if any((d / "ebin" / "ejabberd.app").exists() for d in lib.glob("ejabberd-*")):
            return erl, str(lib)
    pytest.skip(f"ejabberd is installed but its ebin/ejabberd.app is not under {[str(c) for c in candidates]}")


def _user(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _pids_with(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (a node name unique to one instance)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Ejabberd:
    """A private ejabberd: `conference.localhost` an external component with `secret`, accounts
    made with `register`, c2s without TLS on `c2s_port`, the component listener on
    `component_port`."""

    def __init__(self, harness, secret: str = "e2e-component-secret", muc_domain: str = MUC_DOMAIN,
                 component_number: Optional[int] = None, anonymous_logins: bool = False):
        self.erl, self.erl_libs = find_ejabberd()
        self.harness = harness
        self.secret = secret
        self.muc_domain = muc_domain
        self.component_number = component_number
        self.anonymous_logins = anonymous_logins
        n = next(_instances)
        self.node = f"ejabberd_e2e_{os.getpid()}_{n}@localhost"
        self.cookie = secrets.token_hex(16)
        # Not under pytest's tmp_path (0700, root's): the ejabberd user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix=f"muc-e2e-ejabberd-{n}-"))
        self.etc, self.spool, self.log_dir = self.dir / "etc", self.dir / "spool", self.dir / "logs"
        for d in [self.etc, self.spool, self.log_dir]:
            d.mkdir()
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.dist_port = free_port()
        self.config = self.etc / "ejabberd.yml"
        self.config.write_text(self._config())
        (self.etc / "inetrc").write_text('{lookup,["file","native"]}.\n'
                                         '{host,{127,0,0,1}, ["localhost"]}.\n')
        self.run_as = None
        if os.geteuid() == 0 and _user("ejabberd") and shutil.which("setpriv"):
            self.run_as = _user("ejabberd")
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
        os.chmod(self.dir, 0o755)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            "ERL_LIBS": self.erl_libs,
            "ERL_INETRC": str(self.etc / "inetrc"),
            "ERL_CRASH_DUMP": str(self.log_dir / "erl_crash.dump"),
            "ERL_CRASH_DUMP_BYTES": "0",
            "EJABBERD_CONFIG_PATH": str(self.config),
            "EJABBERD_LOG_PATH": str(self.log_dir / "ejabberd.log"),
            "CONTRIB_MODULES_PATH": str(self.dir / "contrib"),
        }
        # As `ejabberdctl foreground` starts it (with ERL_DIST_PORT set), less +K/+P.
        argv = [self.erl, "-sname", self.node, "-setcookie", self.cookie,
                "-erl_epmd_port", str(self.dist_port), "-start_epmd", "false",
                "-mnesia", "dir", f'"{self.spool}"', "-s", "ejabberd", "-noinput"]
        if self.run_as is not None:
            argv = ["setpriv", f"--reuid={self.run_as.pw_uid}", f"--regid={self.run_as.pw_gid}",
                    "--init-groups", "--", *argv]
        self.service = Service("ejabberd", argv, harness.logs, cwd=self.spool, env=self.env,
                               extra_log=self.log_dir / "error.log")
        self._helpers: list[int] = []  # erl_child_setup and such, outside the process group
        harness.services.append(self.service)
        harness.cleanups.append(self._cleanup)

    def _balancing(self) -> str:
        if self.component_number is None:
            return ""
        return f"""domain_balancing:
  "{self.muc_domain}":
    type: bare_destination
    component_number: {self.component_number}
"""

    def _auth(self) -> str:
        if not self.anonymous_logins:
            return "auth_method: [internal]\n"
        # Any user name and password log in when no account has that name (login_anon): the load
        # tool's hundreds of users need no registration; registered accounts work as before.
        return "auth_method: [internal, anonymous]\nanonymous_protocol: login_anon\n"

    def _config(self) -> str:
        # c2s `backlog`: ejabberd's default, 5, drops the SYNs of a load tool's burst of logins
        # (bench/cluster), which then wait for TCP's retransmissions (1, 3, 7, 15 s...).
        return f"""# Generated by tests/e2e/ejabberd.py
{self._balancing()}loglevel: info
log_rotate_count: 0
hosts:
  - {DOMAIN}
listen:
  -
    port: {self.c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    max_stanza_size: 262144
    access: c2s
    backlog: 1024
  -
    port: {self.component_port}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      "{self.muc_domain}":
        password: "{self.secret}"
{self._auth()}auth_password_format: plain
s2s_access: none
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
"""

    # -- lifecycle

    def start(self, timeout: float = START_TIMEOUT) -> "Ejabberd":
        self.service.start()
        wait_for_port(self.c2s_port, timeout, "ejabberd c2s", self.service)
        wait_for_port(self.component_port, timeout, "ejabberd component port", self.service)
        self._helpers = _children(self.service.pid)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """A graceful stop (SIGTERM: Erlang's init:stop), waiting for every process of the
        instance to be gone; SIGKILL and a failure past `timeout`."""
        code = self.service.terminate(timeout)
        self._reap()
        return code

    def kill9(self) -> None:
        self.service.kill()
        self._reap()

    def _reap(self, grace: float = 5.0) -> None:
        """The node's helpers (erl_child_setup, in a session of their own) end when the node
        does; anything left with this instance's node name is killed, by pid."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            left = [p for p in self._helpers if _alive(p)] + _pids_with(self.node)
            if not left:
                return
            time.sleep(0.05)
        for pid in set([p for p in self._helpers if _alive(p)] + _pids_with(self.node)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _cleanup(self) -> None:
        self.service.kill()  # already stopped by the harness's teardown; make sure
        self._reap()
        # Keep ejabberd's own logs beside the test's others.
        if self.log_dir.exists():
            dest = self.harness.logs / f"{self.dir.name}-logs"
            shutil.copytree(self.log_dir, dest, dirs_exist_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- administration

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """An ejabberdctl command against this node (what `ejabberdctl --node N ARGS` runs)."""
        ctl_node = f"ctl_{secrets.token_hex(4)}_{self.node}"
        argv = [self.erl, "-sname", ctl_node, "-setcookie", self.cookie,
                "-erl_epmd_port", str(self.dist_port), "-start_epmd", "false", "-dist_listen", "false",
                "-hidden", "-noinput", "-s", "ejabberd_ctl", "-extra", self.node, *args]
        return subprocess.run(argv, env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def register(self, user: str, password: str = PASSWORD, host: str = DOMAIN) -> None:
        r = self.ctl("register", user, host, password)
        if r.returncode != 0 and "already registered" not in r.stdout + r.stderr:
            raise E2EFailure(f"ejabberdctl register {user} {host} exited with {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}\n{self.tail()}")

    def tail(self) -> str:
        return self.service.tail()

    # -- balancing

    def slots_of(self, bare_jids: list[str]) -> dict[str, int]:
        """The slot (1..component_number) ejabberd routes each bare JID to, as
        `ejabberd_router:balancing_route/4` picks it for `bare_destination`: the slots sorted, the
        `erlang:phash2/2` of the lowercased bare JID `{User, Server, <<>>}` modulo their count,
        plus one. Computed by this Erlang (phash2 is stable across releases), for lowercase
        JIDs."""
        assert self.component_number is not None, "ejabberd started without domain_balancing"
        terms = ",".join(f'{{<<"{j.split("@")[0]}">>,<<"{j.split("@")[1]}">>}}' for j in bare_jids)
        program = (f"lists:foreach(fun({{U,S}}) -> io:format(\"~b~n\", "
                   f"[erlang:phash2({{U,S,<<>>}}, {self.component_number}) + 1]) end, [{terms}]), halt().")
        r = subprocess.run([self.erl, "-noshell", "-noinput", "-eval", program], capture_output=True,
                           text=True, timeout=60, env=self.env)
        if r.returncode != 0:
            raise E2EFailure(f"erl computing the balancing slots exited with {r.returncode}:\n{r.stdout}{r.stderr}")
        slots = [int(line) for line in r.stdout.split()]
        assert len(slots) == len(bare_jids), f"erl printed {r.stdout!r} for {len(bare_jids)} JIDs"
        return dict(zip(bare_jids, slots))


def start_ejabberd(h, users=(), **kw) -> Ejabberd:
    """A started ejabberd registered with the harness `h` (stopped at its teardown), with
    `users` registered on `localhost` with password PASSWORD."""
    ej = Ejabberd(h, **kw).start()
    for user in users:
        ej.register(user)
    return ej


def ejabberd_login(h, ej: Ejabberd, user: str, resource: str = "e2e", password: str = PASSWORD):
    """A client logged in to ejabberd as user@localhost (plain c2s: no TLS offered)."""
    return h.client(f"{user}@{DOMAIN}/{resource}", password, ej.c2s_port, plaintext_ok=True,
                    name=user).connect()
