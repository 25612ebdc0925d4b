"""The README's quick start with a stock terminal client: Debian's profanity (0.13.1 here), driven
headless in tmux (send-keys, capture-pane) against the bundled server, beside a slixmpp client.

profanity connects with `/connect you@localhost server 127.0.0.1 port PORT tls allow`, answers the
password prompt, accepts the self-signed certificate (`/tls allow`), joins
`myroom@conference.localhost`, accepts the instant room (`/room accept`) and talks; a slixmpp
client in the same room must receive profanity's message and see its occupant, and its own
message must show in profanity's pane (the MUC window, its occupants panel). profanity then gives
the room a title through the configuration form (`/room config`, `/fieldN "..."`, `/form submit`),
and the slixmpp client sees it in the room's disco#info: profanity refuses to fill a text field
whose `type` is left out (XEP-0004's default). Then the room's configuration changes (status 104), which
makes profanity re-query the room's disco#info: profanity 0.13.1 crashed there when the room's
identity had no name (../shared/notes/interop.md), so it must still be running and talking after.

profanity runs with `-l DEBUG`, so its log (under the test's tmp_path, and quoted in failures with
its pane) holds every stanza it sent and received.

Needs the Debian packages `profanity` and `tmux`; skips without them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from flows import expect_groupchat, groupchat, join, own_presence, room_name, submit_config
from harness import DOMAIN, MUC_DOMAIN, E2EFailure, is_presence, muc_item, show, statuses, user_add

ROOM = f"myroom@{MUC_DOMAIN}"
YOU, YOU_PASSWORD = f"you@{DOMAIN}", "you-Secret1"
BOB, BOB_PASSWORD = f"bob@{DOMAIN}", "bob-Secret1"
PROFANITY_TITLE = "Titled in profanity"
NEW_NAME = "Renamed by bob"

PANE_TIMEOUT = 10.0

# Preferences as profanity 0.13.1 writes them with `/save` after the matching commands: no splash,
# no desktop notifications (no D-Bus), no tray, no chat logs or history, no carbons, chat states,
# receipts or pings, no reconnection: nothing that prompts, spawns or acts on a timer. And
# `statuses.muc=all`: arrivals are printed in the room's window.
PROFRC = """[ui]
splash=false
history=false
flash=false
beep=false
statuses.muc=all

[notifications]
message=false
room=false
invite=false
sub=false
typing=false
tray=false

[logging]
chlog=false
grlog=false

[connection]
carbons=false
autoping=0
receipts.send=false
receipts.request=false
reconnect=0

[chatstates]
enabled=false
outtype=false
gone=0
"""


class Profanity:
    """profanity in a detached tmux session on a private tmux server (its own socket under a
    temporary TMUX_TMPDIR), with HOME and the XDG directories in a temporary directory."""

    def __init__(self, root: Path):
        self.root = root
        self.marker = f"muc-e2e-profanity-{os.getpid()}-{secrets.token_hex(4)}"
        self.socket_name = self.marker
        # Short, for the socket path's length limit; removed by close().
        self.tmux_tmpdir = Path(tempfile.mkdtemp(prefix="muc-e2e-tmux-"))
        home = root / "home"
        self.dirs = {"HOME": home, "XDG_CONFIG_HOME": home / ".config",
                     "XDG_DATA_HOME": home / ".local/share", "XDG_STATE_HOME": home / ".local/state",
                     "XDG_CACHE_HOME": home / ".cache", "XDG_RUNTIME_DIR": root / "run",
                     "GNUPGHOME": home / ".gnupg"}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dirs["XDG_CONFIG_HOME"] / "profanity").mkdir(mode=0o700)
        (self.dirs["XDG_CONFIG_HOME"] / "profanity/profrc").write_text(PROFRC)
        self.log = self.dirs["XDG_DATA_HOME"] / "profanity/logs/profanity.log"
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                    "TERM": "xterm-256color", "TMUX_TMPDIR": str(self.tmux_tmpdir),
                    # No session bus: nothing may autolaunch one.
                    "DBUS_SESSION_BUS_ADDRESS": "disabled:",
                    "MUC_E2E_MARKER": self.marker,
                    **{k: str(v) for k, v in self.dirs.items()}}
        self.conf = root / "tmux.conf"
        # A crash leaves the pane (and its last screen) in place, with its exit status.
        self.conf.write_text("set -g remain-on-exit on\nset -g history-limit 2000\n")
        self.server_pid: int | None = None
        self.pane_pid: int | None = None
        self.closed = False

    # -- tmux

    def tmux(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["tmux", "-L", self.socket_name, "-f", str(self.conf), *args], env=self.env,
                           capture_output=True, text=True, timeout=10)
        if check and r.returncode != 0:
            raise E2EFailure(f"tmux {' '.join(args)} exited with {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def start(self) -> "Profanity":
        self.tmux("new-session", "-d", "-s", "prof", "-x", "200", "-y", "60",
                  "exec profanity -l DEBUG")
        info = self.tmux("display-message", "-p", "-t", "prof", "#{pid} #{pane_pid}").split()
        self.server_pid, self.pane_pid = int(info[0]), int(info[1])
        self.wait_for(r"Profanity\. Type /help", "profanity's start (its title bar)")
        return self

    def pane(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "prof", check=False)

    def dead(self) -> str | None:
        """None while profanity runs; what tmux knows of its end otherwise."""
        out = self.tmux("list-panes", "-t", "prof", "-F",
                        "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}", check=False).strip()
        if not out:
            return "the tmux session is gone"
        dead, status, sig = (out.split("|") + ["", ""])[:3]
        if dead == "1":
            return f"profanity died: killed by signal {sig}" if sig else f"profanity exited with status {status}"
        return None

    def type(self, line: str) -> None:
        """Types one line and Enter, as a user does."""
        self.tmux("send-keys", "-t", "prof", "-l", line)
        self.tmux("send-keys", "-t", "prof", "Enter")

    def log_tail(self, n: int = 40) -> str:
        if not self.log.exists():
            return "(no profanity log)"
        lines = self.log.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(line[:400] for line in lines)

    def context(self) -> str:
        if self.server_pid is None:
            return "--- profanity was not started"
        pane = "\n".join(line.rstrip() for line in self.pane().splitlines() if line.strip())
        return f"--- profanity pane:\n{pane}\n--- {self.log} (last lines):\n{self.log_tail()}"

    def wait_for(self, pattern: str, what: str, timeout: float = PANE_TIMEOUT) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.pane())
            if m:
                return m
            gone = self.dead()
            if gone or time.monotonic() > deadline:
                raise E2EFailure(f"profanity: no {what} (/{pattern}/) "
                                 + (f"- {gone}" if gone else f"within {timeout:.0f}s") + f"\n{self.context()}")
            time.sleep(0.1)

    def occupants(self) -> dict[str, list[str]]:
        """The MUC window's occupants panel (on the right): nicks under each role heading."""
        lines = self.pane().splitlines()
        column = next((line.find("Moderators") for line in lines if "Moderators" in line), -1)
        panel: dict[str, list[str]] = {}
        heading = None
        for line in lines[:-1] if column >= 0 else []:  # the last line is the status bar
            entry = line[column:].strip()
            if entry in ("Moderators", "Participants", "Visitors"):
                heading = entry
                panel[heading] = []
            elif entry and heading:
                panel[heading].append(entry)
        return panel

    def wait_until(self, cond, what: str, timeout: float = PANE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            gone = self.dead()
            if gone or time.monotonic() > deadline:
                raise E2EFailure(f"profanity: no {what} "
                                 + (f"- {gone}" if gone else f"within {timeout:.0f}s") + f"\n{self.context()}")
            time.sleep(0.1)

    # -- teardown

    def close(self) -> None:
        """Kills the private tmux server (profanity gets SIGHUP), then by pid whatever of ours is
        left (the server, profanity, anything carrying our marker in its environment). Once: a
        second `tmux kill-server` would look for its socket under /tmp, the TMUX_TMPDIR gone."""
        if self.closed:
            return
        self.closed = True
        self.tmux("kill-server", check=False)
        ours = [p for p in (self.pane_pid, self.server_pid) if p]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_alive(p) for p in ours + _marked(self.marker)):
            time.sleep(0.05)
        for pid in ours + _marked(self.marker):
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.tmux_tmpdir, ignore_errors=True)

    def leftovers(self) -> list[int]:
        return [p for p in [self.pane_pid, self.server_pid, *_marked(self.marker)] if p and _alive(p)]


def _alive(pid: int) -> bool:
    """Running (a zombie, already dead but not yet reaped by its parent, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _marked(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (started under our tmux server)."""
    needle = f"MUC_E2E_MARKER={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture
def profanity(h):
    for tool in ["profanity", "tmux"]:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages: profanity tmux)")
    p = Profanity(h.tmp / "profanity")
    h.cleanups.append(p.close)
    return p


def test_profanity_quick_start(h, profanity):
    try:
        _quick_start(h, profanity)
    except AssertionError as e:  # E2EFailure included: add what profanity showed, if not there yet
        shown = "" if "--- profanity pane:" in str(e) else f"\n{profanity.context()}"
        raise E2EFailure(f"{e}{shown}\n{h.service_tails()}") from None


def _quick_start(h, profanity: Profanity) -> None:
    data = h.data_dir()
    user_add(data, YOU, YOU_PASSWORD)
    user_add(data, BOB, BOB_PASSWORD)
    server = h.bundled(data)
    prof = profanity.start()

    # Connect as the README says; the password at profanity's prompt; the self-signed certificate.
    prof.type(f"/connect {YOU} server 127.0.0.1 port {server.port} tls allow")
    prof.wait_for(r"Enter password:", "password prompt")
    prof.type(YOU_PASSWORD)
    prof.wait_for(r"Use '/tls allow' to accept this certificate", "certificate prompt")
    prof.type("/tls allow")
    prof.wait_for(rf"{re.escape(YOU)}/\S+ logged in successfully", "login")

    # Join: the room is created, locked, with profanity's user as its owner; accept it as is.
    prof.type(f"/join {ROOM}")
    prof.wait_for(r"You have joined the room as you, role: moderator, affiliation: owner",
                  "join as the room's owner")
    if "/room accept" in prof.pane():
        prof.type("/room accept")
        prof.wait_for(r"Room unlocked", "the instant room's unlocking")
    # profanity asked for the room's disco#info on joining, while the room was still locked: its
    # creator gets the answer (a nameless room is shown by its localpart) and the title bar has it.
    prof.wait_until(lambda: "myroom" in (prof.pane().splitlines() or [""])[0],
                    "title bar naming the new room by its localpart")

    # A slixmpp client joins and sees profanity's occupant.
    bob = h.client(f"{BOB}/e2e", BOB_PASSWORD, server.port, name="bob").connect()
    join(bob, ROOM, "bob")
    you = bob.expect(lambda s: is_presence(s, f"{ROOM}/you"), "profanity's occupant presence (room/you)")
    item = muc_item(you)
    if item.get("affiliation") != "owner" or item.get("role") != "moderator":
        raise E2EFailure(f"profanity's occupant is not owner and moderator: {show(you)}")
    bob_self = own_presence(bob, ROOM, "bob")
    if 201 in statuses(bob_self):
        raise E2EFailure(f"bob created the room anew: {show(bob_self)}")
    prof.wait_for(r"bob has joined the room", "bob's arrival")
    prof.wait_until(lambda: "bob" in prof.occupants().get("Participants", []),
                    "bob among the Participants in the occupants panel")

    # profanity talks; bob receives it. bob talks; profanity shows it.
    prof.type("hello from profanity")
    expect_groupchat(bob, ROOM, "you", "hello from profanity")
    prof.wait_for(r"you: hello from profanity", "its own message reflected by the room")
    groupchat(bob, ROOM, "hello from slixmpp", "bob-1")
    expect_groupchat(bob, ROOM, "bob", "hello from slixmpp")
    prof.wait_for(r"bob: hello from slixmpp", "bob's message")

    # The person gives the room a title through the configuration form: profanity opens it in a
    # window of its own, one `/fieldN value` command per field, then `/form submit`. A text field
    # whose form leaves out type="text-single" (XEP-0004's default) is one profanity cannot fill.
    prof.type("/room config")
    tag = prof.wait_for(r"\[(field\d+)\] Title", "the configuration form's Title field").group(1)
    prof.type(f'/{tag} "{PROFANITY_TITLE}"')
    prof.wait_for(r"Field updated", f"/{tag} accepted")
    prof.type("/form submit")
    prof.wait_for(r"Room configuration successful", "the submitted form's success")
    titled = bob.expect(lambda s: s.tag.endswith("message") and s.get("from") == ROOM and 104 in statuses(s),
                        "the configuration-change notice (status 104) after profanity's form")
    if room_name(bob, ROOM) != PROFANITY_TITLE:
        raise E2EFailure(f"the room's disco#info name is not {PROFANITY_TITLE!r} after profanity's form "
                         f"({show(titled)})")
    prof.wait_until(lambda: PROFANITY_TITLE in (prof.pane().splitlines() or [""])[0],
                    f"title bar naming the room {PROFANITY_TITLE!r} after its form")

    # The configuration changes: profanity makes bob an owner, bob renames the room. Occupants get
    # status 104, on which profanity re-queries the room's disco#info.
    prof.type(f"/affiliation set owner {BOB}")
    promoted = bob.expect(lambda s: is_presence(s, f"{ROOM}/bob") and muc_item(s).get("affiliation") == "owner",
                          "bob's presence as owner after profanity's /affiliation set owner")
    if 110 not in statuses(promoted):
        raise E2EFailure(f"bob's own presence after his promotion lacks status 110: {show(promoted)}")
    log_mark = prof.log.stat().st_size if prof.log.exists() else 0
    submit_config(bob, ROOM, {"muc#roomconfig_roomname": NEW_NAME})
    change = bob.expect(lambda s: s.tag.endswith("message") and s.get("from") == ROOM and 104 in statuses(s),
                        "the configuration-change notice (status 104)")
    if room_name(bob, ROOM) != NEW_NAME:
        raise E2EFailure(f"the room's disco#info name is not {NEW_NAME!r} after the change ({show(change)})")

    # profanity got the 104, asked the room for its disco#info again, and got it, named (its debug
    # log has the stanzas as sent and received).
    def since_change() -> str:
        with open(prof.log, "rb") as f:
            f.seek(log_mark)
            return f.read().decode(errors="replace")
    steps = [("the status 104 notice", r"RECV: <message [^\n]*<status code=\"104\"/>"),
             ("a disco#info get to the room", r"SENT: <iq (?=[^>]*type=\"get\")(?=[^>]*to=\"" + re.escape(ROOM)
              + r"\")[^>]*><query xmlns=\"http://jabber.org/protocol/disco#info\"/>"),
             (f"a disco#info result naming the room {NEW_NAME!r}",
              r"RECV: <iq (?=[^>]*type=\"result\")(?=[^>]*from=\"" + re.escape(ROOM) + r"\")[^>]*>"
              r"<query xmlns=\"http://jabber.org/protocol/disco#info\"><identity [^>]*name=\""
              + re.escape(NEW_NAME) + r"\"")]
    missing = steps
    deadline = time.monotonic() + PANE_TIMEOUT
    while missing and time.monotonic() < deadline and prof.dead() is None:
        text, at, missing = since_change(), 0, []
        for what, pattern in steps:
            m = re.compile(pattern).search(text, at)
            if m is None:
                missing.append((what, pattern))
                break
            at = m.end()
        if missing:
            time.sleep(0.1)
    gone = prof.dead()
    if gone:
        raise E2EFailure(f"profanity died after the room's configuration changed: {gone}")
    if missing:
        raise E2EFailure(f"profanity's log shows no {missing[0][0]} after the configuration change "
                   f"(/{missing[0][1]}/)")

    # It shows the new name in the MUC window's title bar (the pane's first line).
    prof.wait_until(lambda: NEW_NAME in (prof.pane().splitlines() or [""])[0],
                    f"title bar naming the room {NEW_NAME!r} after the configuration change")

    # Still alive and talking, both ways.
    prof.type("still here after the change")
    expect_groupchat(bob, ROOM, "you", "still here after the change")
    prof.wait_for(r"you: still here after the change", "its message after the configuration change")
    groupchat(bob, ROOM, "good to see you", "bob-2")
    prof.wait_for(r"bob: good to see you", "bob's message after the configuration change")
    if prof.dead():
        raise E2EFailure(f"profanity died: {prof.dead()}")

    # Teardown kills the private tmux server; check here that nothing of ours outlives it.
    prof.close()
    left = prof.leftovers()
    if left:
        raise E2EFailure(f"processes left after killing the tmux server: {left}")
