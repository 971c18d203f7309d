"""The run journal: the durable position of a run and its event log (SQLite).

Committed at every transition (block start, block end, loop iteration) with
``synchronous=FULL`` in WAL mode, so a power cut cannot lose a committed position. Events
are batched into the same transactions. The journal is what a restart reads to re-attach
to a run; it is small and its size does not grow with the data (records live in Parquet).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import zlib
from pathlib import Path
from typing import Any

from .events import Event

__all__ = ["Journal", "JournalCorrupt"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cycles (cycle INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS carried (id INTEGER PRIMARY KEY, body BLOB, crc INTEGER NOT NULL);
"""


class JournalCorrupt(RuntimeError):
    """The journal cannot be trusted; a run must not resume from it silently."""


class Journal:
    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._db.executescript(_SCHEMA)
            # the kv table holds the run's position: check its pages (a whole-file check
            # grows with the run and made restarts slower late in a run; the other
            # tables fail loudly through sqlite if a page of theirs is damaged)
            check = self._db.execute("PRAGMA quick_check(kv)").fetchone()
        except sqlite3.DatabaseError as exc:
            raise JournalCorrupt(f"{path}: {exc}") from None
        if check is None or check[0] != "ok":
            raise JournalCorrupt(f"{path}: integrity check failed: {check}")
        self._pending_events: list[tuple[int, str]] = []
        self._pending_cycles: list[tuple[int, str]] = []
        self._pending_rows: tuple[bytes | None, int] | None = None

    def close(self) -> None:
        try:
            self._commit()
        except sqlite3.Error as exc:  # e.g. a full disk: reported by the run already
            log.error("journal %s: last events not committed: %s", self.path, exc)
        finally:
            self._db.close()

    # -------------------------------------------------------------- writes

    def _put(self, key: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"), default=str)
        self._db.execute(
            "INSERT OR REPLACE INTO kv(key, value, crc) VALUES (?, ?, ?)",
            (key, text, zlib.crc32(text.encode())),
        )

    def _commit(self, **kv: Any) -> None:
        self._db.execute("BEGIN")
        try:
            for k, v in kv.items():
                self._put(k, v)
            if self._pending_events:
                self._db.executemany(
                    "INSERT OR IGNORE INTO events(seq, body) VALUES (?, ?)", self._pending_events
                )
                self._pending_events = []
            if self._pending_cycles:
                self._db.executemany(
                    "INSERT OR REPLACE INTO cycles(cycle, body) VALUES (?, ?)",
                    self._pending_cycles,
                )
                self._pending_cycles = []
            if self._pending_rows is not None:
                body, stored = self._pending_rows
                self._db.execute(
                    "INSERT OR REPLACE INTO carried(id, body, crc) VALUES (0, ?, ?)",
                    (body, zlib.crc32(body or b"")),
                )
                self._put("stored", {"seq": stored})
                self._pending_rows = None
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def log_event(self, event: Event) -> None:
        self._pending_events.append((event.seq, event.to_json()))

    def add_cycle(self, row: dict[str, Any]) -> None:
        self._pending_cycles.append((int(row["cycle"]), json.dumps(row, default=str)))

    def set_rows(self, body: bytes | None, stored_seq: int) -> None:
        """Rows not yet on disk elsewhere (an Arrow IPC stream), carried by the next commit
        (replacing those the one before carried), and the newest row the run holds."""
        self._pending_rows = (body, stored_seq)

    def set_started(self, wall_time: float, *, mono: float | None = None) -> None:
        """When the run started: wall time, and the loop's clock (``mono``) then."""
        self._commit(started={"wall": wall_time, "mono": mono})

    def unit_start(self, unit: dict[str, Any]) -> None:
        """A unit (block, EIS, chamber set) is about to be sent to an instrument."""
        self._commit(unit={**unit, "state": "sent"})

    def unit_done(self, unit: dict[str, Any]) -> None:
        self._commit(unit={**unit, "state": "done"})

    def set_unit(self, unit: dict[str, Any]) -> None:
        """Rewrite the unit entry as it is (its state included)."""
        self._commit(unit=unit)

    def set_state(self, state: str, reason: str | None) -> None:
        self._commit(state={"state": state, "reason": reason})

    # -------------------------------------------------------------- reads

    def get(self, key: str) -> Any:
        row = self._db.execute("SELECT value, crc FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        text, crc = row
        if zlib.crc32(text.encode()) != crc:
            raise JournalCorrupt(f"{self.path}: entry {key!r} fails its checksum")
        return json.loads(text)

    def rows(self) -> bytes | None:
        """The rows the last commit carried (see :meth:`set_rows`)."""
        row = self._db.execute("SELECT body, crc FROM carried WHERE id = 0").fetchone()
        if row is None or row[0] is None:
            return None
        body, crc = bytes(row[0]), int(row[1])
        if zlib.crc32(body) != crc:
            raise JournalCorrupt(f"{self.path}: the rows it carries fail their checksum")
        return body

    def cycles(self) -> list[dict[str, Any]]:
        return [
            json.loads(body)
            for (body,) in self._db.execute("SELECT body FROM cycles ORDER BY cycle")
        ]

    def max_event_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def events_after(self, seq: int) -> list[Event]:
        return [
            Event.from_json(body)
            for (body,) in self._db.execute(
                "SELECT body FROM events WHERE seq > ? ORDER BY seq", (seq,)
            )
        ]

    def events(self) -> list[Event]:
        return [
            Event.from_json(body)
            for (body,) in self._db.execute("SELECT body FROM events ORDER BY seq")
        ]
