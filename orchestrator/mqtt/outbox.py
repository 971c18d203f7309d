"""A durable outbox for events that must reach the broker: SQLite, WAL, synchronous=FULL.

Events are appended in batches (one transaction, one fsync per batch) and stay *pending*
until the publisher has the broker's PUBACK for them; only then are they marked sent. A
crash or a dead broker therefore loses nothing: on the next connection (or the next run
of the same outbox, e.g. on resume) the pending events go out in order. A message may be
delivered twice (sent, then the connection died before the PUBACK); subscribers drop
duplicates by ``(run_id, seq)``.

The outbox is synchronous and thread-safe; the publisher calls it from its I/O thread so
a slow disk never stalls the control loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from ..events import Event

__all__ = ["Outbox"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    appended REAL NOT NULL,
    sent REAL,
    UNIQUE (run_id, seq)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE sent IS NULL;
"""


class Outbox:
    """Durable, ordered store of events not yet acknowledged by the broker.

    ``append(events)`` stores a batch (idempotent on ``(run_id, seq)``), ``pending(limit)``
    returns the oldest unsent events in order, ``mark_sent(up_to_seq)`` marks every
    pending event with ``seq <= up_to_seq`` as delivered.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False
        if self.path.exists():
            self._open()  # fail early on a damaged or unreadable file

    def _open(self) -> sqlite3.Connection:
        """The connection, made on first need: an outbox with nothing to keep leaves no
        file, and the run directory may not exist yet when the publisher starts."""
        if self._db is not None:
            return self._db
        if self._closed:
            raise ValueError(f"MQTT outbox {self.path} is closed")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise OSError(f"cannot open MQTT outbox {self.path}: {exc}") from exc
        self._db = db
        return db

    def _exists(self) -> bool:
        return self._db is not None or self.path.exists()

    def append(self, events: Iterable[Event]) -> int:
        """Store events durably in one transaction; returns how many were new."""
        now = time.time()
        rows = [(e.run_id, e.seq, e.channel, e.to_json(), now) for e in events]
        if not rows:
            return 0
        with self._lock:
            db = self._open()
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR IGNORE INTO outbox (run_id, seq, channel, event, appended) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return db.total_changes - before

    def pending(self, limit: int = 1000) -> list[Event]:
        """The oldest ``limit`` events not yet marked sent, in the order appended."""
        with self._lock:
            if not self._exists():
                return []
            rows = (
                self._open()
                .execute(
                    "SELECT event FROM outbox WHERE sent IS NULL ORDER BY id LIMIT ?", (limit,)
                )
                .fetchall()
            )
        return [Event.from_json(r[0]) for r in rows]

    def pending_count(self) -> int:
        with self._lock:
            if not self._exists():
                return 0
            (n,) = self._open().execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()
        return int(n)

    def mark_sent(self, up_to_seq: int, *, run_id: str | None = None) -> int:
        """Mark pending events with ``seq <= up_to_seq`` (of ``run_id`` if given) as sent."""
        sql = "UPDATE outbox SET sent = ? WHERE sent IS NULL AND seq <= ?"
        args: tuple[object, ...] = (time.time(), up_to_seq)
        if run_id is not None:
            sql += " AND run_id = ?"
            args = (*args, run_id)
        return self._write(sql, [args])

    def mark_events_sent(self, events: Iterable[Event]) -> int:
        """Mark exactly these events as sent (what the publisher uses after PUBACKs)."""
        now = time.time()
        return self._write(
            "UPDATE outbox SET sent = ? WHERE sent IS NULL AND run_id = ? AND seq = ?",
            [(now, e.run_id, e.seq) for e in events],
        )

    def _write(self, sql: str, rows: list[tuple[object, ...]]) -> int:
        if not rows:
            return 0
        with self._lock:
            if not self._exists():
                return 0
            db = self._open()
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return db.total_changes - before

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"
