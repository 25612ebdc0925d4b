"""PostgreSQL for the end-to-end tests: one cluster per session, a fresh database per test.

The cluster is the one CI started for the whole run (`scripts/postgres start`, its URL exported as
MUC_TEST_POSTGRES); without it, the session starts its own through the same script (with a state
directory of its own) and stops it at the end. Databases are made and dropped with Debian's
`psql`, so the venv needs no PostgreSQL driver.

Missing PostgreSQL is a pytest skip with the reason.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness import REPO, E2EFailure

SCRIPT = REPO / "scripts/postgres"
PSQL_TIMEOUT = 60

_databases = itertools.count(1)


def psql(url: str, sql: str) -> str:
    """`psql URL -c SQL`: its output (unaligned, tuples only), or a failure naming the statement."""
    psql_bin = shutil.which("psql")
    if psql_bin is None:
        raise E2EFailure("psql is not installed (scripts/postgres setup)")
    r = subprocess.run([psql_bin, url, "-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql],
                       capture_output=True, text=True, timeout=PSQL_TIMEOUT)
    if r.returncode != 0:
        raise E2EFailure(f"psql {url} -c {sql!r} exited with {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout.strip()


def with_database(url: str, database: str) -> str:
    """`url` naming `database` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


class Cluster:
    """The session's cluster: its URL (the `postgres` database), and databases made on it."""

    def __init__(self, url: str, state: Optional[Path] = None):
        self.url = url
        self._state = state  # set when this session started the cluster, and stops it

    @classmethod
    def for_session(cls) -> "Cluster":
        url = os.environ.get("MUC_TEST_POSTGRES")
        if url:
            return cls(url)
        if not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
            pytest.skip("PostgreSQL is not installed (scripts/postgres setup) and MUC_TEST_POSTGRES is unset")
        state = Path(tempfile.mkdtemp(prefix="muc-e2e-postgres-state-"))
        r = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MUC_POSTGRES_STATE": str(state)})
        if r.returncode != 0:
            shutil.rmtree(state, ignore_errors=True)
            raise E2EFailure(f"scripts/postgres start exited with {r.returncode}:\n{r.stdout}{r.stderr}")
        return cls(r.stdout.strip(), state)

    def stop(self) -> None:
        if self._state is None:
            return
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MUC_POSTGRES_STATE": str(self._state)})
        shutil.rmtree(self._state, ignore_errors=True)
        self._state = None

    def create_database(self) -> str:
        """A new, empty database: its URL."""
        name = f"e2e_{os.getpid()}_{next(_databases)}_{secrets.token_hex(3)}"
        psql(self.url, f'CREATE DATABASE "{name}"')
        return with_database(self.url, name)

    def drop_database(self, url: str) -> None:
        """Drops the database of `url`, closing whatever sessions still use it."""
        name = urlsplit(url).path.lstrip("/")
        psql(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
