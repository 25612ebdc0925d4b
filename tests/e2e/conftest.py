"""Fixtures for the end-to-end tests. Run them with `scripts/e2e` (which installs Prosody and the
venv first), after `scripts/build`.

Each test gets a `Harness` (`h`): everything it starts through it (muc-host, Prosody, clients)
is stopped at teardown, and its logs are under the test's tmp_path (`logs/`), named in failures.
A test that takes `postgres_url` gets a fresh database on the session's PostgreSQL cluster.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import postgres  # noqa: E402


@pytest.fixture
def h(tmp_path, request):
    harness_ = harness.Harness(tmp_path, request.node.name)
    try:
        yield harness_
    finally:
        harness_.teardown()


@pytest.fixture(scope="session")
def postgres_cluster():
    """The session's PostgreSQL cluster (CI's, through MUC_TEST_POSTGRES, else one of its own)."""
    cluster = postgres.Cluster.for_session()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster):
    """A fresh database on the session's cluster, dropped after the test: its URL."""
    url = postgres_cluster.create_database()
    try:
        yield url
    finally:
        postgres_cluster.drop_database(url)


def pytest_terminal_summary(terminalreporter):
    import conftest_report
    if conftest_report.LINES:
        terminalreporter.section("e2e results recorded")
        for line in conftest_report.LINES:
            terminalreporter.write_line(line)
