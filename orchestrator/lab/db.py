"""Connecting to the lab database (psycopg 3, imported only when lab mode is used).

:func:`connect_reader` opens a read connection with psycopg2 instead, for the commands
that only read and must answer at once (``labrig ls --lab``): importing psycopg 3 takes
three to four times as long as psycopg2 (its package loads asyncio, ctypes and every
adapter up front), longer than the whole command may take. The queries in
:mod:`.queries` run on either driver (DB-API cursors, ``%(name)s`` parameters).

The URL is a libpq one, ``postgresql://user@host:5432/lab``. Passwords come from the
environment (``PGPASSWORD``) or ``~/.pgpass`` (libpq insists on mode 0600), TLS settings
from ``sslmode=verify-full&sslrootcert=...`` or ``PGSSL*``: never put a password in a
station file. :func:`redact` is applied to every URL that is logged or printed.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["LabUnavailable", "aconnect", "connect", "connect_reader", "dbname",
           "reader_error", "redact"]  # fmt: skip

CONNECT_TIMEOUT_S = 5


class LabUnavailable(ConnectionError):
    """The lab database cannot be reached (or refused the login); the message says why."""


def redact(url: str) -> str:
    """``url`` without its password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def dbname(url: str) -> str:
    path = urlsplit(url).path.lstrip("/")
    return path or "postgres"


def _check(url: str) -> None:
    if not re.match(r"^postgres(ql)?://", url):
        raise LabUnavailable(f"lab URL {redact(url)!r}: expected postgresql://user@host/db")


def connect(url: str, *, app: str = "labrig", autocommit: bool = True) -> Any:
    """A synchronous connection (CLI clients, migrations, tests)."""
    import psycopg

    _check(url)
    try:
        return psycopg.connect(
            url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, application_name=app
        )
    except psycopg.OperationalError as exc:
        raise LabUnavailable(f"lab database {redact(url)}: {_first_line(exc)}") from None


def connect_reader(url: str, *, app: str = "labrig") -> Any:
    """A psycopg2 connection in autocommit mode, for reading; close it with ``.close()``
    (psycopg2's ``with conn:`` ends a transaction, it does not close). Errors of its
    queries are ``psycopg2.Error``: see :func:`reader_error`."""
    import psycopg2

    _check(url)
    try:
        conn = psycopg2.connect(url, connect_timeout=CONNECT_TIMEOUT_S, application_name=app)
    except psycopg2.Error as exc:
        raise LabUnavailable(f"lab database {redact(url)}: {_first_line(exc)}") from None
    conn.autocommit = True
    return conn


def reader_error(url: str, exc: BaseException) -> LabUnavailable:
    """A failed query of a :func:`connect_reader` connection, as a one-line error."""
    return LabUnavailable(f"lab database {redact(url)}: {_first_line(exc)}")


async def aconnect(url: str, *, app: str = "labrig-agent") -> Any:
    """An asyncio connection in autocommit mode (the agent's loops)."""
    import psycopg

    _check(url)
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name=app
        )
    except psycopg.OperationalError as exc:
        raise LabUnavailable(f"lab database {redact(url)}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AsyncLink:
    """One asyncio connection to the lab database, opened on first use and reopened after
    a failure. Calls are serialised (one at a time) and each has a deadline; any failure
    is raised as :class:`LabUnavailable` and the next call connects afresh."""

    def __init__(self, url: str, *, app: str, deadline_s: float = 10.0) -> None:
        import asyncio

        self.url = url
        self.app = app
        self.deadline_s = deadline_s
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self.failures = 0

    async def call(self, fn: Any, *, deadline_s: float | None = None) -> Any:
        """``await fn(conn)`` on the connection; returns its result."""
        import asyncio

        import psycopg

        async with self._lock:
            try:
                async with asyncio.timeout(deadline_s or self.deadline_s):
                    if self._conn is None or self._conn.closed:
                        self._conn = await aconnect(self.url, app=self.app)
                    return await fn(self._conn)
            except psycopg.errors.InsufficientPrivilege:
                raise
            except LabUnavailable:
                self.failures += 1
                await self._drop()
                raise
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError, OSError) as exc:
                self.failures += 1
                await self._drop()
                raise LabUnavailable(f"lab database: {_first_line(exc)}") from None

    async def _drop(self) -> None:
        import asyncio
        import contextlib

        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await conn.close()

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()
