"""A real PostgreSQL for tests and benchmarks, from Debian's ``postgresql`` package: a throwaway
cluster (``initdb``) in a temporary directory, ``postgres`` on a free loopback port, run as an
unprivileged user (PostgreSQL refuses root: as root we use ``edgemon-test``, created with
``useradd`` when missing), stopped by its PID.

Durability is switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the cluster
is thrown away, and tests must not wait on a shared disk. A template database holds the migrated
schema; ``database()`` copies it (``CREATE DATABASE ... TEMPLATE``), so every test gets a fresh
database in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

import psycopg

from scripts.broker import free_port

TEST_USER = "edgemon-test"
TEMPLATE = "edgemon_template"


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (``/usr/lib/postgresql/N/bin``)."""

    def version(path: str) -> int:
        name = Path(path).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=version)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    return Path(found[-1]).parent


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as: ``edgemon-test`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        # Two test runs at once (the clock-ahead runs) may both add it: the loser's error is fine.
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", TEST_USER],
            check=False, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(TEST_USER)


try:  # looked up once: a Popen preexec_fn must not load libraries after fork
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _fast_shutdown_with_parent() -> None:
    """In the server's child before exec: SIGINT (PostgreSQL's fast shutdown) when the test
    run that started it dies without stopping it, so no server is left behind."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGINT), 0, 0, 0)  # PR_SET_PDEATHSIG


class PostgresServer:
    """One throwaway PostgreSQL cluster. ``start()`` and ``stop()``; ``url(db)`` to connect."""

    def __init__(self, workdir: Path | None = None, *, durable: bool = False) -> None:
        self.durable = durable  # benchmarks: fsync and synchronous commits, as in production
        # Not under pytest's tmp_path: its parents are 0700 root, closed to the server's user.
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edgemon-pg-"))
        self.data = self.workdir / "data"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "postgres.log"
        self._names = count(1)
        self._account = _run_as()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _as_user(self) -> dict[str, int]:
        if self._account is None:
            return {}
        return {"user": self._account.pw_uid, "group": self._account.pw_gid}

    def start(self, timeout: float = 30.0) -> PostgresServer:
        bindir = postgres_bin()
        if self._account is not None:
            os.chown(self.workdir, self._account.pw_uid, self._account.pw_gid)
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, cwd=self.workdir, **self._as_user(),
        )  # fmt: skip
        self.port = free_port()
        fast = (
            []
            if self.durable
            else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={self.workdir}",
                 "-c", "max_connections=200", "-c", "shared_buffers=64MB", *fast],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, **self._as_user(),
                preexec_fn=_fast_shutdown_with_parent,  # noqa: PLW1509 - runs before exec only
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2, autocommit=True):
                    break
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not start: {self.log.read_text()}") from None
                time.sleep(0.1)
        self._make_template()
        return self

    def _make_template(self) -> None:
        from backend.store.postgres import PostgresStore

        self.execute(f"CREATE DATABASE {TEMPLATE}")
        PostgresStore(self.url(TEMPLATE), pool_size=1).close()

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def database(self, *, migrated: bool = True) -> str:
        """A new database (migrated from the template, or empty); its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        template = TEMPLATE if migrated else "template0"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(psycopg.Error):
            self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), SIGKILL after 10 s; the directory goes too."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)
