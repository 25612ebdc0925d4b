"""The served web client in a real browser: Debian's Chromium, headless, driven by Playwright
(never a browser download), against `muc-host serve` with its HTTP server on an ephemeral port.

Two browser users (each a browser context of its own) and a slixmpp client share one room: log
in from the served page, create and configure the room, exchange messages every way, change the
subject, reload and see the history again, leave. A guest's way in through `/join/ROOM` is a
test of its own. Screenshots of the final states, and each page's console, are kept under
target/e2e-results/browser/.

Every wait is on Converse's DOM (or a stanza), never a sleep.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flows import check, expect_groupchat, groupchat, join, own_presence, submit_config
from harness import (DOMAIN, MUC_DOMAIN, RESULTS, STANZA_TIMEOUT, is_presence, kind, subject,
                     user_add)

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = RESULTS / "browser"
# Converse's own waits are short; a cold browser context may take a few seconds to start.
UI_TIMEOUT_MS = 20_000

PASSWORDS = {"alice": "alice-Secret1", "bob": "bob-Secret2", "carol": "carol-Secret3"}
ROOM_LOCAL = "teahouse"
ROOM = f"{ROOM_LOCAL}@{MUC_DOMAIN}"
ROOM_NAME = "The Tea House"
ROOM_DESCRIPTION = "Green, black & <oolong> welcome"


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (each user gets a context of its own: separate storage)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/e2e-setup")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class WebUser:
    """One person in the web client: a browser context and its page, with what they do."""

    def __init__(self, browser, base: str, name: str):
        self.name = name
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        # The browser's console, kept beside the screenshots for whoever reads a failure.
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        # And what it sent over the WebSocket (test accounts' credentials only).
        self.page.on("websocket", lambda ws: ws.on(
            "framesent", lambda frame: self.console.append(f"sent: {frame}")))

    def open(self, path: str = "/") -> None:
        self.page.goto(self.base + path)

    def log_in(self, user: str) -> None:
        """Fills Converse's login form (on the page now) and waits until the session is up."""
        page = self.page
        page.fill("converse-login-form input[name=jid]", f"{user}@{DOMAIN}")
        page.fill("converse-login-form input[name=password]", PASSWORDS[user])
        page.click("converse-login-form [type=submit]")
        # The groupchats' menu exists once connected.
        page.wait_for_selector("converse-rooms-list a.show-add-muc-modal", state="attached")

    def log_in_if_asked(self, user: str) -> None:
        """After a reload Converse may log in again by itself (its stored keys) or ask."""
        page = self.page
        page.wait_for_selector("converse-login-form input[name=jid], converse-rooms-list",
                               state="attached")
        if page.query_selector("converse-login-form input[name=jid]"):
            self.log_in(user)

    def create_room(self, room: str) -> None:
        """Through the groupchats' menu: "Add groupchat", the room's address, Join."""
        page = self.page
        page.click("converse-rooms-list converse-dropdown button.dropdown-toggle")
        page.click("converse-rooms-list a.show-add-muc-modal")
        page.fill("form.add-chatroom input[name=chatroom]", room)
        page.click("form.add-chatroom input[type=submit]")
        self.wait_in_room(room)

    def room_view(self, room: str) -> str:
        return f'converse-muc[jid="{room}"]'

    def wait_in_room(self, room: str) -> None:
        """The room's view, with its message box: entered."""
        self.page.wait_for_selector(f"{self.room_view(room)} textarea.chat-textarea")

    def configure(self, room: str, name: str, description: str) -> None:
        """The owner's "Configure" form: a name, a description, persistent."""
        page = self.page
        view = self.room_view(room)
        page.click(f"{view} converse-muc-heading converse-dropdown button.dropdown-toggle")
        page.click(f"{view} converse-muc-heading a.configure-chatroom-button")
        form = "form.chatroom-form"
        page.wait_for_selector(f"{form} input[name='muc#roomconfig_roomname']")
        page.fill(f"{form} input[name='muc#roomconfig_roomname']", name)
        page.fill(f"{form} [name='muc#roomconfig_roomdesc']", description)
        page.check(f"{form} input[name='muc#roomconfig_persistentroom']")
        page.click(f"{form} input[type=submit]")
        page.wait_for_selector(form, state="detached")

    def say(self, room: str, text: str) -> None:
        textarea = f"{self.room_view(room)} textarea.chat-textarea"
        self.page.fill(textarea, text)
        self.page.press(textarea, "Enter")

    def wait_message(self, room: str, text: str) -> None:
        """A message with this text shown in the room."""
        self.page.wait_for_selector(
            f"{self.room_view(room)} .chat-msg__text:text-is({quote(text)})")

    def wait_subject(self, room: str, text: str) -> None:
        self.page.wait_for_selector(
            f"{self.room_view(room)} converse-muc-heading .chat-head__desc:has-text({quote(text)})")

    def leave(self, room: str) -> None:
        """The room's "Leave" in its heading menu."""
        page = self.page
        view = self.room_view(room)
        page.click(f"{view} converse-muc-heading converse-dropdown button.dropdown-toggle")
        page.click(f"{view} converse-muc-heading a.close-chatbox-button")
        confirm = "converse-confirm-modal button.btn-primary, .modal.show button.btn-primary"
        if page.query_selector(confirm):
            page.click(confirm)
        page.wait_for_selector(view, state="detached")

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def close(self) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"{self.name}-console.txt").write_text("\n".join(self.console) + "\n")
        self.context.close()


def quote(text: str) -> str:
    """A Playwright text selector argument, quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def slixmpp_login(h, server, user: str):
    return h.client(f"{user}@{DOMAIN}/slixmpp", PASSWORDS[user], server.port, name=user).connect()


@pytest.fixture
def server(h):
    data = h.data_dir()
    for user, password in PASSWORDS.items():
        user_add(data, f"{user}@{DOMAIN}", password)
    host = h.bundled(data, "--http", "127.0.0.1:0")
    assert host.http_port, f"no 'muc-host: http listening on ADDR' line\n{host.tail()}"
    return host


def test_two_browser_users_and_a_slixmpp_client_share_a_room(h, server, browser):
    base = f"http://127.0.0.1:{server.http_port}"
    alice = WebUser(browser, base, "alice")
    bob = WebUser(browser, base, "bob")
    try:
        # Alice logs in from the served page, creates the room and configures it.
        alice.open("/")
        alice.log_in("alice")
        alice.create_room(ROOM)
        alice.configure(ROOM, ROOM_NAME, ROOM_DESCRIPTION)

        # Its invitation page shows what she set, escaped.
        status, page = http_get(server.http_port, f"/join/{ROOM_LOCAL}")
        check(status == 200, f"/join/{ROOM_LOCAL}: {status}\n{page}")
        check("The Tea House" in page and "Green, black &amp; &lt;oolong&gt; welcome" in page,
              f"the invitation page lacks the room's name or description:\n{page}")
        check(f"xmpp:{ROOM}?join" in page, f"no xmpp: join link:\n{page}")

        # Carol comes with slixmpp, Bob through the invitation's "Join in the browser".
        carol = slixmpp_login(h, server, "carol")
        join(carol, ROOM, "carol")
        own_presence(carol, ROOM, "carol")
        bob.open(f"/join/{ROOM_LOCAL}")
        bob.page.click("#join-browser")
        bob.page.wait_for_selector("converse-login-form input[name=jid]")
        bob.log_in("bob")
        bob.wait_in_room(ROOM)
        carol.expect(lambda s: is_presence(s, f"{ROOM}/bob"), "bob's arrival")

        # Messages every way: browser -> browser and slixmpp, slixmpp -> both browsers.
        alice.say(ROOM, "Hello from Alice's browser")
        bob.wait_message(ROOM, "Hello from Alice's browser")
        expect_groupchat(carol, ROOM, "alice", "Hello from Alice's browser")
        bob.say(ROOM, "Bob here, also in a browser")
        alice.wait_message(ROOM, "Bob here, also in a browser")
        expect_groupchat(carol, ROOM, "bob", "Bob here, also in a browser")
        groupchat(carol, ROOM, "Carol from slixmpp", "carol-1")
        expect_groupchat(carol, ROOM, "carol", "Carol from slixmpp")
        alice.wait_message(ROOM, "Carol from slixmpp")
        bob.wait_message(ROOM, "Carol from slixmpp")

        # The owner changes the subject with Converse's /topic command.
        alice.say(ROOM, "/topic Oolong tasting at five")
        bob.wait_subject(ROOM, "Oolong tasting at five")
        carol.expect(lambda s: kind(s) == "message" and subject(s) == "Oolong tasting at five",
                     "the new subject")

        # Bob reloads as a new browser would, his page's storage gone: he logs in again and the
        # room's history comes back from the server, not from Converse's cache.
        page_url = bob.page.url
        bob.page.goto("about:blank")
        devtools = bob.context.new_cdp_session(bob.page)
        devtools.send("Storage.clearDataForOrigin", {"origin": base, "storageTypes": "all"})
        devtools.detach()
        bob.page.goto(page_url)
        bob.log_in("bob")
        bob.wait_in_room(ROOM)
        for text in ["Hello from Alice's browser", "Bob here, also in a browser",
                     "Carol from slixmpp"]:
            bob.wait_message(ROOM, text)
        bob.wait_subject(ROOM, "Oolong tasting at five")
        # His last page's session waits to be resumed (XEP-0198): the new one enters as another
        # session of the same occupant, and the room sees bob neither leave nor come back.
        carol.expect_nothing(lambda s: is_presence(s, f"{ROOM}/bob", "unavailable"),
                             "bob leaving on a reload")

        # A plain reload keeps the page's storage: Converse resumes its session (XEP-0198), the
        # room sees the same occupant, and what was said meanwhile reaches him.
        bob.page.reload()
        bob.log_in_if_asked("bob")
        bob.wait_in_room(ROOM)
        groupchat(carol, ROOM, "Said while Bob reloaded", "carol-2")
        expect_groupchat(carol, ROOM, "carol", "Said while Bob reloaded")
        bob.wait_message(ROOM, "Said while Bob reloaded")
        bob.say(ROOM, "Bob after a plain reload")
        alice.wait_message(ROOM, "Bob after a plain reload")
        expect_groupchat(carol, ROOM, "bob", "Bob after a plain reload")

        # Alice leaves; the others see her go.
        alice.leave(ROOM)
        carol.expect(lambda s: is_presence(s, f"{ROOM}/alice", "unavailable"),
                     "alice's departure")
        bob.page.wait_for_selector(
            f"{bob.room_view(ROOM)} converse-muc-occupant-list, {bob.room_view(ROOM)}",
            state="attached")

        check(not alice.errors and not bob.errors,
              f"script errors in the pages: {alice.errors + bob.errors}")
    finally:
        for user in (alice, bob):
            try:
                user.screenshot(f"{user.name}-final")
            except Exception:
                pass
            user.close()


# --------------------------------------------------------------------------------------------
# Guests: needs SASL ANONYMOUS on the guest domain (`--guest-domain`).

GUEST_DOMAIN = f"guest.{DOMAIN}"


def test_a_guest_joins_through_the_invitation_link(h, browser):
    data = h.data_dir()
    user_add(data, f"alice@{DOMAIN}", PASSWORDS["alice"])
    server = h.bundled(data, "--http", "127.0.0.1:0", "--guest-domain", GUEST_DOMAIN)
    # Alice (slixmpp) makes a public, persistent room and waits in it.
    alice = slixmpp_login(h, server, "alice")
    join(alice, ROOM, "alice")
    own_presence(alice, ROOM, "alice")
    submit_config(alice, ROOM, {"muc#roomconfig_persistentroom": "1",
                                "muc#roomconfig_roomname": ROOM_NAME})

    guest = WebUser(browser, f"http://127.0.0.1:{server.http_port}", "guest")
    try:
        guest.open(f"/join/{ROOM_LOCAL}")
        guest.page.click("#join-guest")
        # Converse logs in anonymously at once; a guest chooses a nickname for the room.
        nickname = "converse-muc-nickname-form input[name=nick], .muc-nickname-form input[name=nick]"
        guest.page.wait_for_selector(nickname)
        guest.page.fill(nickname, "visitor")
        guest.page.press(nickname, "Enter")
        guest.wait_in_room(ROOM)
        arrival = alice.expect(lambda s: is_presence(s, f"{ROOM}/visitor"), "the guest's arrival")
        check(arrival.get("type") is None, "the guest is in the room")

        guest.say(ROOM, "Hello from a guest")
        expect_groupchat(alice, ROOM, "visitor", "Hello from a guest")
        groupchat(alice, ROOM, "Welcome, guest", "alice-welcome")
        guest.wait_message(ROOM, "Welcome, guest")

        guest.leave(ROOM)
        alice.expect(lambda s: is_presence(s, f"{ROOM}/visitor", "unavailable"),
                     "the guest's departure")
        check(not guest.errors, f"script errors in the page: {guest.errors}")
    finally:
        try:
            guest.screenshot("guest-final")
        except Exception:
            pass
        guest.close()
