"""The room archive (XEP-0313) through a stock client library's own MAM support: slixmpp's
`xep_0313` pages a room's archive of 500 messages forward and back, through the bundled listener
and through Prosody with muc-host as its component; a client that joins with `maxstanzas="0"`
(as Monal does) sees no history and catches up through MAM alone."""

import socket
import threading
import time
import xml.etree.ElementTree as ET

import conftest_report
from flows import check, join, own_presence, submit_config
from harness import DOMAIN, MUC_DOMAIN, Client, delayed, kind, show, start_component

MESSAGES = 500
PAGE = 50
SID = "urn:xmpp:sid:0"
MAM = "urn:xmpp:mam:2"
# The room's archive is filled faster than its default per-occupant message rate allows.
NO_FLOOD_LIMITS = ("--room-messages-per-second", "0", "--client-bytes-per-second", "0")


def bundled_login(h, server):
    def login(user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/mam", "any password", server.port, plaintext_ok=True,
                        name=user).connect()
    return login


def stanza_id(message: ET.Element, room: str) -> str | None:
    for sid in message.findall(f"{{{SID}}}stanza-id"):
        if sid.get("by") == room:
            return sid.get("id")
    return None


def fill_room(owner: Client, room: str) -> list[tuple[str, str]]:
    """Creates `room` (an instant room) and says MESSAGES things in it: (stanza-id, body) of
    each, in order, as the live echoes carried them."""
    join(owner, room, "filler")
    own_presence(owner, room, "filler")
    submit_config(owner, room, {})
    bodies = [f"archived message {n}" for n in range(MESSAGES)]
    for n, text in enumerate(bodies):
        owner.send(f'<message type="groupchat" to="{room}" id="fill-{n}"><body>{text}</body></message>')
    last = owner.expect(lambda s: kind(s) == "message" and s.get("id") == f"fill-{MESSAGES - 1}"
                        and s.get("type") == "groupchat", "the echo of the last message", 60)
    echoes = owner.take_all(lambda s: kind(s) == "message" and s.get("type") == "groupchat"
                            and (s.get("id") or "").startswith("fill-")) + [last]
    live = [(stanza_id(e, room), e.findtext("{jabber:client}body")) for e in echoes]
    check([body for _, body in live] == bodies,
          f"the live echoes are not the {MESSAGES} messages in order: {len(live)} echoes")
    check(all(sid for sid, _ in live), "a live echo carries no stanza-id from the room")
    return live


def catch_up(reader: Client, room: str) -> None:
    """Joins with maxstanzas=0: the room sends no history at all."""
    join(reader, room, "latecomer", history='<history maxstanzas="0"/>')
    own_presence(reader, room, "latecomer")
    reader.expect_nothing(lambda s: kind(s) == "message" and delayed(s), "history after maxstanzas=0", 1.5)


def with_mam(client: Client):
    client.harness.loop.call(client.xmpp.register_plugin, "xep_0313")
    return client.xmpp.plugin["xep_0313"]


def page_through(client: Client, room: str, reverse: bool) -> list[tuple[str, str, str]]:
    """Every archived message, through slixmpp's RSM iteration: (result id, body, delay stamp)."""
    from slixmpp import JID
    mam = with_mam(client) if "xep_0313" not in client.xmpp.plugin else client.xmpp.plugin["xep_0313"]

    async def run():
        got = []
        async for message in mam.iterate(jid=JID(room), reverse=reverse, rsm={"max": PAGE}):
            result = message["mam_result"]
            forwarded = result["forwarded"]
            got.append((result["id"], forwarded["stanza"]["body"], str(forwarded["delay"]["stamp"])))
        return got
    return client.harness.loop.run(run(), 120)


def metadata(client: Client, room: str) -> tuple[str, str]:
    from slixmpp import JID
    mam = client.xmpp.plugin["xep_0313"]
    async def ask():
        return await mam.get_archive_metadata(jid=JID(room))
    answer = client.harness.loop.run(ask(), 30)
    meta = answer["mam_metadata"]
    return meta["start"]["id"], meta["end"]["id"]


def check_archive(reader: Client, room: str, live: list[tuple[str, str]], via: str) -> None:
    forward = page_through(reader, room, reverse=False)
    check([(rid, body) for rid, body, _ in forward] == live,
          f"{via}: paging forward gave {len(forward)} messages, not the {MESSAGES} said live with "
          f"their stanza-ids, in order (first differences: "
          f"{[(a, b) for a, b in zip(forward, live) if a[:2] != b][:3]})")
    check(all(stamp for _, _, stamp in forward), f"{via}: a forwarded message has no <delay/>")
    backward = page_through(reader, room, reverse=True)
    check([(rid, body) for rid, body, _ in backward] == list(reversed(live)),
          f"{via}: paging back gave {len(backward)} messages, not the {MESSAGES} newest first")
    first, last = metadata(reader, room)
    check((first, last) == (live[0][0], live[-1][0]),
          f"{via}: the archive's metadata says {first}..{last}, the room said {live[0][0]}..{live[-1][0]}")
    conftest_report.add(f"MAM {via}: slixmpp paged {MESSAGES} archived messages forward and back "
                        f"({PAGE} a page) after joining with maxstanzas=0")


def test_mam_through_the_bundled_listener(h):
    server = h.bundled(h.data_dir(), "--insecure-auth", *NO_FLOOD_LIMITS)
    login = bundled_login(h, server)
    room = f"archive@{MUC_DOMAIN}"
    live = fill_room(login("owner"), room)
    reader = login("reader")
    catch_up(reader, room)
    check_archive(reader, room, live, "bundled")


def test_mam_through_prosody(h):
    prosody = h.prosody("component").start()
    start_component(h, h.data_dir(), prosody.component_port, prosody.secret, *NO_FLOOD_LIMITS)

    def login(user: str) -> Client:
        return h.client(f"{user}@{DOMAIN}/mam", "any password", prosody.c2s_port, plaintext_ok=True,
                        name=user).connect()
    room = f"archive@{MUC_DOMAIN}"
    live = fill_room(login("owner"), room)
    reader = login("reader")
    catch_up(reader, room)
    check_archive(reader, room, live, "through Prosody")
    # What a room that says it archives shows a stock client: the feature in disco#info.
    info = reader.iq_ok(f'<iq type="get" id="disco-mam" to="{room}">'
                        '<query xmlns="http://jabber.org/protocol/disco#info"/></iq>')
    features = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
    check("urn:xmpp:mam:2" in features, f"the room does not advertise urn:xmpp:mam:2: {show(info)}")


FLOOD_QUERIES = 200
MAX_PAGE = 250  # the plugin's cap on a page (plugin/src/features/archive.rs)


class Flooder:
    """A raw c2s session (PLAIN without TLS) that sends its MAM queries all at once and reads
    every answer in a thread of its own, as fast as the server sends them: for each iq id, its
    answer's type (or error condition) and how many results carried that id as queryid."""

    def __init__(self, port: int, user: str):
        import base64
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        header = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        self.sock.sendall(header.encode())
        self._read_until(b"</stream:features>")
        plain = base64.b64encode(f"\0{user}\0any password".encode()).decode()
        self.sock.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
        check(b"<success" in self._read_until(b"success", b"failure"), f"{user}: PLAIN refused")
        self.sock.sendall(header.encode())
        self._read_until(b"</stream:features>")
        self.sock.sendall(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        self._read_until(b"</iq>")
        self.answers: dict[str, str] = {}
        self.results: dict[str, int] = {}
        self.last_answer_at = 0.0
        self.stream_error: str | None = None
        self.failure: str | None = None
        self.last_bytes = b""
        self.done = threading.Event()

    def _read_until(self, *markers: bytes) -> bytes:
        got = b""
        while not any(m in got for m in markers):
            data = self.sock.recv(65536)
            check(bool(data), f"the server closed the flooder's stream: {got[-300:]!r}")
            got += data
        return got

    def flood(self, queries: list[str], expected: int) -> None:
        threading.Thread(target=self._read, args=(expected,), daemon=True).start()
        self.sock.sendall("".join(queries).encode())

    def _read(self, expected: int) -> None:
        try:
            self._read_answers(expected)
        except Exception as e:  # reported by the test, not lost in the thread
            self.failure = repr(e)
        finally:
            self.done.set()

    def _read_answers(self, expected: int) -> None:
        parser = ET.XMLPullParser(("start", "end"))
        parser.feed("<stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        depth = 0
        while len(self.answers) < expected:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                break
            if not data:
                break
            self.last_bytes = data[-400:]
            parser.feed(data)
            for event, el in parser.read_events():
                depth += 1 if event == "start" else -1
                if event != "end" or depth != 1:
                    continue
                if el.tag == "{jabber:client}iq":
                    error = el.find("{jabber:client}error")
                    condition = (_local(error[0].tag) if error is not None and len(error) else el.get("type"))
                    self.answers[el.get("id")] = condition
                    self.last_answer_at = time.monotonic()
                elif el.tag == "{http://etherx.jabber.org/streams}error":
                    self.stream_error = ET.tostring(el, encoding="unicode")
                elif (result := el.find(f"{{{MAM}}}result")) is not None:
                    queryid = result.get("queryid")
                    self.results[queryid] = self.results.get(queryid, 0) + 1
                el.clear()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def flood_queries() -> tuple[list[str], dict[str, str], dict[str, int]]:
    """FLOOD_QUERIES queries of four kinds, in turn: the largest page there is (`max` 100000,
    capped), the newest 50, an unknown field (bad-request), an unknown id (item-not-found).
    Returns them, the answer each expects and the results each expects."""
    queries, answers, results = [], {}, {}
    for n in range(FLOOD_QUERIES):
        shape = n % 4
        fields = ('<field var="muc#no-such-field"><value>x</value></field>' if shape == 2 else "")
        form = (f'<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE" type="hidden">'
                f'<value>{MAM}</value></field>{fields}</x>') if fields else ""
        rsm = {0: "<max>100000</max>", 1: "<max>50</max><before/>", 2: "<max>10</max>",
               3: "<max>10</max><after>no-such-id</after>"}[shape]
        queries.append(f'<iq type="set" id="flood-{n}" to="flooded@{MUC_DOMAIN}">'
                       f'<query xmlns="{MAM}" queryid="flood-{n}">{form}'
                       f'<set xmlns="http://jabber.org/protocol/rsm">{rsm}</set></query></iq>')
        answers[f"flood-{n}"] = {0: "result", 1: "result", 2: "bad-request", 3: "item-not-found"}[shape]
        if shape in (0, 1):
            results[f"flood-{n}"] = {0: MAX_PAGE, 1: 50}[shape]
    return queries, answers, results


def test_a_query_flood_is_answered_and_holds_up_no_other_room(h):
    """One client sends FLOOD_QUERIES MAM queries at once (a quarter of them asking for 100,000
    messages); while the room answers them, another room's occupant talks: each of its messages
    comes back before the flood's last answer does (the core serves connections in turn, a
    query costs at most one capped page), and every query of the flood gets its answer."""
    server = h.bundled(h.data_dir(), "--insecure-auth", "--room-messages-per-second", "0")
    login = bundled_login(h, server)
    fill_room(login("owner"), f"flooded@{MUC_DOMAIN}")
    talker = login("talker")
    quiet = f"quiet@{MUC_DOMAIN}"
    join(talker, quiet, "talker")
    own_presence(talker, quiet, "talker")
    submit_config(talker, quiet, {})

    flooder = Flooder(server.port, "flooder")
    queries, answers, results = flood_queries()
    flooder.flood(queries, len(queries))
    round_trips, echoed_at = [], []
    n = 0
    while not flooder.done.is_set() and n < 500:
        begun = time.monotonic()
        talker.send(f'<message type="groupchat" to="{quiet}" id="quiet-{n}"><body>still here {n}</body></message>')
        talker.expect(lambda s: kind(s) == "message" and s.get("id") == f"quiet-{n}", f"the echo of quiet-{n}", 30)
        echoed_at.append(time.monotonic())
        round_trips.append(echoed_at[-1] - begun)
        n += 1
    check(flooder.done.wait(120) and len(flooder.answers) == len(queries),
          f"the flood got {len(flooder.answers)} of {len(queries)} answers ({flooder.failure}); "
          f"the last said: {flooder.last_bytes!r}\n{h.service_tails()}")
    check(flooder.stream_error is None, f"the server ended the flooder's stream: {flooder.stream_error}")
    check(flooder.answers == answers,
          f"the flood's answers differ: {[(k, v, flooder.answers.get(k)) for k, v in answers.items() if flooder.answers.get(k) != v][:5]}")
    check(flooder.results == results,
          f"the flood's pages differ: {[(k, v, flooder.results.get(k)) for k, v in results.items() if flooder.results.get(k) != v][:5]}")
    meanwhile = sorted(t for t, at in zip(round_trips, echoed_at) if at < flooder.last_answer_at)
    check(len(meanwhile) >= 5, f"only {len(meanwhile)} of the other room's messages came back while "
                               "the flood was being answered")
    conftest_report.add(f"MAM flood: {len(queries)} queries at once, all answered; meanwhile the other room's "
                        f"{len(meanwhile)} round trips took p50 {meanwhile[len(meanwhile) // 2] * 1000:.0f} ms, "
                        f"max {meanwhile[-1] * 1000:.0f} ms")
