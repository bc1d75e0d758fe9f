"""A real PostgreSQL server for the tests: initdb into a temporary directory,
`postgres` listening on 127.0.0.1 (a free port) and a private Unix socket,
trust authentication for a user `slamon`, one fresh database per test.

PostgreSQL refuses to run as root; as root (CI) the server runs as the
`postgres` system user the Debian package creates. The session's server is
stopped (fast shutdown) when the tests end.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.misbehaving import HOST, free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@dataclass
class PgServer:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def dsn(self, dbname: str = "postgres", **extra: str) -> str:
        params = {"host": HOST, "port": str(self.port), "user": "slamon", "dbname": dbname,
                  **extra}
        return " ".join(f"{k}={v}" for k, v in params.items())

    def create_database(self) -> str:
        """A new empty database; its connection string."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return self.dsn(name)

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: smart shutdown; the sessions are ours and gone
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(*settings: str) -> PgServer:
    """Initialise and start a server; `settings` are extra `name=value` parameters."""
    initdb, postgres = _bin("initdb"), _bin("postgres")
    if initdb is None or postgres is None:
        raise RuntimeError("PostgreSQL is not installed (scripts/setup installs the Debian "
                           "package 'postgresql')")
    root = Path(tempfile.mkdtemp(prefix="slamon-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "slamon", "--auth=trust",
                    "--no-sync", "-E", "UTF8", "--locale=C"],
                   check=True, capture_output=True)
    port = free_port()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [*as_user, postgres, "-D", str(data), "-h", HOST, "-p", str(port), "-k", str(sock),
         # a test database needs no durability across a power cut: fsync off is what
         # keeps 100 databases cheap (kill -9 of slamon, not of PostgreSQL, is tested)
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=200", "-c", "shared_buffers=32MB",
         *(arg for setting in settings for arg in ("-c", setting))],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = PgServer(root, port, proc)
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(psycopg.OperationalError):
            psycopg.connect(server.dsn(), connect_timeout=2).close()
            return server
        if proc.poll() is not None or time.monotonic() > deadline:
            log_text = (root / "server.log").read_text(errors="replace")[-2000:]
            server.stop()
            raise RuntimeError(f"postgres did not start: {log_text}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.create_database()
