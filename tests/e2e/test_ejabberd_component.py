"""muc-host as an external component (XEP-0114) of Debian's ejabberd: clients log into ejabberd,
the MUC at conference.localhost is muc-host; the link survives ejabberd restarting."""

import time

import conftest_report
from ejabberd import ejabberd_login, start_ejabberd
from flows import room_survives_restart, seed_flow
from harness import DOMAIN, E2EFailure, component_accepted, start_component

RECONNECT_TIMEOUT = 45  # muc-host's reconnection back-off, bounded
USERS = ("alice", "bob", "carol", "dave")


def test_ejabberd_fixture_accepts_a_component(h):
    """The fixture itself: ejabberd takes a component handshake with the configured secret and
    a registered account logs in (so a failure of the next test is muc-host's, not the
    configuration's)."""
    ej = start_ejabberd(h, users=["alice"])
    events = component_accepted(h, ej.component_port, ej.secret)
    assert "session_start" in events, f"ejabberd refused the component: {events}\n{ej.tail()}"
    alice = ejabberd_login(h, ej, "alice")
    assert alice.full_jid == f"alice@{DOMAIN}/e2e", f"bound {alice.full_jid!r}"


def test_seed_flow_through_ejabberd_and_reconnect(h):
    ej = start_ejabberd(h, users=USERS)
    muc = start_component(h, h.data_dir(), ej.component_port, ej.secret)

    seeded = seed_flow(lambda user: ejabberd_login(h, ej, user))

    # ejabberd stops (gracefully: its clients and the component link are closed) and comes back
    # on the same ports, with the same Mnesia spool (the accounts).
    mark = muc.service.line_count()
    ej.stop()
    for client in [seeded.owner, seeded.second, seeded.third]:
        client.wait_disconnected()
    ej.start()
    restarted = time.monotonic()
    try:
        again = muc.wait_component_connected(mark, RECONNECT_TIMEOUT)
    except E2EFailure as e:
        raise E2EFailure(f"muc-host did not reconnect to the restarted ejabberd: {e}\n{ej.tail()}")
    assert again.group(1) == f"127.0.0.1:{ej.component_port}", f"unexpected line: {again.group(0)!r}"
    assert muc.service.returncode() is None, "muc-host exited when ejabberd went away"
    conftest_report.add(f"component link (ejabberd): muc-host reconnected {time.monotonic() - restarted:.1f}s "
                        "after ejabberd came back")

    # The room is still there and works: the owner comes back, talks, a newcomer gets it all.
    present = room_survives_restart(lambda user: ejabberd_login(h, ej, user), seeded)
    conftest_report.add(f"component link (ejabberd): after ejabberd's restart a newcomer sees occupants {present}")
