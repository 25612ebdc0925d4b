"""muc-host as an external component (XEP-0114) of Debian's Prosody: clients log into Prosody,
the MUC at conference.localhost is muc-host; the link survives Prosody restarting."""

import time

import conftest_report
from flows import room_survives_restart, seed_flow
from harness import DOMAIN, MUC_DOMAIN, REPO, E2EFailure, component_accepted, ctl, start_component

RECONNECT_TIMEOUT = 45  # muc-host's reconnection back-off, bounded


def prosody_login(h, prosody, user: str, resource: str = "e2e"):
    return h.client(f"{user}@{DOMAIN}/{resource}", "any password", prosody.c2s_port, plaintext_ok=True,
                    name=user).connect()


def test_prosody_fixture_accepts_a_component(h):
    """The fixture itself: Prosody takes a component handshake with the configured secret (so a
    failure of the next test is muc-host's, not the configuration's)."""
    prosody = h.prosody("component").start()
    events = component_accepted(h, prosody.component_port, prosody.secret)
    assert "session_start" in events, f"Prosody refused the component: {events}\n{prosody.tail()}"


def test_seed_flow_through_prosody_and_reconnect(h):
    prosody = h.prosody("component").start()
    data = h.data_dir()
    muc = start_component(h, data, prosody.component_port, prosody.secret)

    seeded = seed_flow(lambda user: prosody_login(h, prosody, user))

    # Hot swap in component mode: the logic changes under the live room, seen through Prosody.
    def version(n: int) -> str:
        answer = seeded.owner.iq_ok(f'<iq type="get" id="version{n}" to="{MUC_DOMAIN}">'
                                    '<query xmlns="jabber:iq:version"/></iq>')
        return answer.find("{jabber:iq:version}query/{jabber:iq:version}version").text
    assert version(1) == "0.3.0"
    swapped = ctl(data, "swap", REPO / "target/wasm32-wasip2/component/muc_plugin_swap_test.wasm")
    assert swapped.returncode == 0, f"ctl swap failed: {swapped.stderr}"
    assert version(2) == "0.3.0+swap-test", "the swapped-in logic does not answer"

    # Prosody dies (its clients with it) and comes back on the same ports.
    mark = muc.service.line_count()
    prosody.kill9()
    for client in [seeded.owner, seeded.second, seeded.third]:
        client.wait_disconnected()
    prosody.start()
    restarted = time.monotonic()
    try:
        muc.wait_component_connected(mark, RECONNECT_TIMEOUT)
    except E2EFailure as e:
        raise E2EFailure(f"muc-host did not reconnect to the restarted Prosody: {e}\n{prosody.tail()}")
    assert muc.service.returncode() is None, "muc-host exited when Prosody went away"
    conftest_report.add(f"component link: muc-host reconnected {time.monotonic() - restarted:.1f}s after "
                        "Prosody came back")

    # The room is still there and works: the owner comes back, talks, a newcomer gets it all.
    present = room_survives_restart(lambda user: prosody_login(h, prosody, user), seeded)
    conftest_report.add(f"component link: after Prosody's restart a newcomer sees occupants {present}")
