"""Fixtures for the end-to-end tests. Run them with `scripts/e2e` (which installs Prosody and the
venv first), after `scripts/build`.

Each test gets a `Harness` (`h`): everything it starts through it (muc-host, Prosody, clients)
is stopped at teardown, and its logs are under the test's tmp_path (`logs/`), named in failures.

E2E_ALLOW_MISSING=1 turns a test needing a muc-host feature this binary does not have yet
(`serve`, `check --server`, ...) into a skip instead of a failure: for development only.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.fixture
def h(tmp_path, request):
    harness_ = harness.Harness(tmp_path, request.node.name)
    try:
        yield harness_
    finally:
        harness_.teardown()


def _missing(what: str) -> None:
    message = f"muc-host at {harness.MUC_HOST} lacks {what}"
    if os.environ.get("E2E_ALLOW_MISSING") == "1":
        pytest.skip(message + " (E2E_ALLOW_MISSING=1)")
    pytest.fail(message + ": build the current tree with scripts/build", pytrace=False)


@pytest.fixture
def serve():
    """Requires `muc-host serve`."""
    harness.require_muc_host()
    if "--c2s" not in harness.serve_help():
        _missing("`serve` (no --c2s in `muc-host serve --help`)")


@pytest.fixture
def serve_component(serve):
    if "--component" not in harness.serve_help():
        _missing("`serve --component`")


@pytest.fixture
def check_server():
    harness.require_muc_host()
    if "--server" not in harness.check_help():
        _missing("`check --server`")


def pytest_terminal_summary(terminalreporter):
    import conftest_report
    if conftest_report.LINES:
        terminalreporter.section("e2e results recorded")
        for line in conftest_report.LINES:
            terminalreporter.write_line(line)
