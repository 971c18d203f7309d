"""A throw-away lab for tests, benchmarks and trials: never used by an agent at work.

- :class:`TempLab` - a fresh database ``labrig_test_<random>`` on a PostgreSQL server
  (migrated), dropped with its roles at the end; :func:`server_reachable` says whether a
  server answers at all.
- :class:`Proc` and :func:`spawn` - a ``labrig`` sub-command in its own process (a
  simulator, an agent), with its first output line (the simulator's address) read back.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .db import LabUnavailable, connect
from .schema import migrate, role_names

__all__ = ["Proc", "TempLab", "server_reachable", "spawn"]

ADMIN_URL = os.environ.get("LABRIG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
LABRIG = [sys.executable, "-m", "labrig.orchestrator.cli"]


def server_reachable(url: str = ADMIN_URL) -> str | None:
    """None if the server answers, else why not."""
    try:
        connect(url, app="labrig test probe").close()
    except LabUnavailable as exc:
        return str(exc)
    return None


class TempLab:
    """``with TempLab() as lab: lab.url`` - a migrated lab database, dropped afterwards."""

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.admin_url = admin_url
        self.name = f"labrig_test_{secrets.token_hex(4)}"
        base, _, _ = admin_url.rpartition("/")
        self.url = f"{base}/{self.name}"
        self.roles = role_names(self.name)
        self.users: list[str] = []

    def url_as(self, user: str) -> str:
        """This lab's URL for another login role."""
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{user}@{rest.split('@', 1)[-1]}"

    def add_user(self, user: str, role: str) -> str:
        """A login role of this lab with ``role``; returns its URL."""
        from psycopg import sql

        name = f"{self.name}_{user}"
        with connect(self.admin_url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            if role in self.roles:
                cur.execute(sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(self.roles[role]), sql.Identifier(name)))  # fmt: skip
        self.users.append(name)
        return self.url_as(name)

    def __enter__(self) -> TempLab:
        with connect(self.admin_url) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        with connect(self.url) as conn:
            migrate(conn)
        return self

    def terminate_backends(self) -> int:
        """Cut every connection to this lab's database (a database restart, as seen by
        its clients); returns how many were cut."""
        with connect(self.admin_url) as conn:
            cur = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        from psycopg import sql

        with connect(self.admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            for r in [*self.users, *self.roles.values()]:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(r)))


class Proc:
    """A child process; ``stop()`` sends SIGTERM (then SIGKILL), ``kill()`` SIGKILL."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        self._log: IO[bytes] = open(log, "ab")  # noqa: SIM115 - closed in stop/kill
        self.p = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.p.pid

    def first_line(self, timeout_s: float = 60.0) -> str:
        """The first line the process prints (a simulator's address)."""
        return self.first_lines(1, timeout_s)[0]

    def first_lines(self, n: int, timeout_s: float = 60.0) -> list[str]:
        """The first ``n`` lines the process prints (``sim serve --count n``: addresses)."""
        assert self.p.stdout is not None
        os.set_blocking(self.p.stdout.fileno(), False)
        deadline = time.monotonic() + timeout_s
        buf = b""
        while time.monotonic() < deadline:
            chunk = self.p.stdout.read() or b""
            buf += chunk
            if buf.count(b"\n") >= n:
                return [x.decode().strip() for x in buf.split(b"\n")[:n]]
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.args[3:5]} printed no address: {self.log.read_text()[-800:]}")

    def alive(self) -> bool:
        return self.p.poll() is None

    def _close(self) -> None:
        if self.p.stdout is not None:
            self.p.stdout.close()
        self._log.close()

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(10)
        self._close()

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
        self._close()
        return int(self.p.returncode)


def spawn(args: list[str], log: Path, **kw: Any) -> Proc:
    """``labrig <args>`` in its own process (its own session: killed as a group)."""
    return Proc([*LABRIG, *args], log, **kw)
