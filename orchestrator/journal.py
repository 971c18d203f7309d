"""The run journal: the durable position of a run and its event log (SQLite).

Committed at every transition (block start, block end, loop iteration) with
``synchronous=FULL`` in WAL mode, so a power cut cannot lose a committed position. Events
are batched into the same transactions. The journal is what a restart reads to re-attach
to a run; it is small and its size does not grow with the data (records live in Parquet).
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import struct
import zlib
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from .events import Event

__all__ = ["Journal", "JournalCorrupt"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cycles (cycle INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS carried (id INTEGER PRIMARY KEY, body BLOB, crc INTEGER NOT NULL);
"""


# tables whose pages a resume checks with SQLite's own check (events: see verify)
_PAGE_CHECKED = ("cycles", "carried")

# events read as one value (and one CRC call) when the log is checked, a thousand at a
# time (a few hundred kB): one value of all of them (megabytes late in a run) is fresh
# memory from the system at every resume, and made the first check in a process slower
_EVENTS_PIECE = 1000
_EVENTS_PIECE_SQL = """SELECT COUNT(*), CAST(group_concat(body, '') AS BLOB)
FROM (SELECT body FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq)"""


class JournalCorrupt(RuntimeError):
    """The journal cannot be trusted; a run must not resume from it silently."""


def check_wal(path: Path) -> None:
    """Check the journal's write-ahead log as SQLite would read it, before SQLite does.

    SQLite stops reading a WAL at the first frame that fails its checksum and carries on
    with what came before: bytes flipped in a committed frame, or a WAL cut inside a
    frame, would silently turn the run back to an older position. Frames of an earlier
    generation of the file (other salts) are ignored, as SQLite does."""
    wal = path.with_name(path.name + "-wal")
    data = wal.read_bytes() if wal.exists() else b""
    if not data:
        return
    if len(data) < 32:
        raise JournalCorrupt(f"{wal.name}: cut off inside its header ({len(data)} bytes)")
    magic, _v, page, _ck, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if magic not in (0x377F0682, 0x377F0683):
        raise JournalCorrupt(f"{wal.name}: not a write-ahead log (damaged header)")
    order = ">" if magic & 1 else "<"
    if _wal_sum(data[:24], 0, 0, order) != (c1, c2):
        raise JournalCorrupt(f"{wal.name}: its header fails its checksum")
    frame = 24 + page
    if (len(data) - 32) % frame:
        raise JournalCorrupt(
            f"{wal.name}: cut off inside frame {(len(data) - 32) // frame + 1} "
            f"(the file was truncated)"
        )
    frames = (len(data) - 32) // frame
    heads = np.frombuffer(data, ">u4", count=frames * frame // 4, offset=32).reshape(frames, -1)
    # frames of the file's earlier generation (other salts) are not part of the log
    other = np.flatnonzero((heads[:, 2] != salt1) | (heads[:, 3] != salt2))
    n = int(other[0]) if other.size else frames
    sums = _frame_sums(data, n, frame, order, (c1, c2))
    bad = np.flatnonzero((sums[:, 0] != heads[:n, 4]) | (sums[:, 1] != heads[:n, 5]))
    if bad.size:
        raise JournalCorrupt(
            f"{wal.name}: frame {int(bad[0]) + 1} fails its checksum (damaged bytes)"
        )


def _wal_sum(buf: bytes, s0: int, s1: int, order: str) -> tuple[int, int]:
    words = struct.unpack(f"{order}{len(buf) // 4}I", buf)
    for k in range(0, len(words), 2):
        s0 = (s0 + words[k] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[k + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _frame_sums(
    data: bytes, n: int, frame: int, order: str, start: tuple[int, int]
) -> npt.NDArray[np.uint64]:
    """The running checksum after each of the first ``n`` frames (SQLite's, as
    :func:`_wal_sum` over each frame's first 8 bytes and its page, chained), all frames'
    words at once. Each pair of words (a, b) maps the sums (s0, s1) to M (s0, s1) +
    (a, a + b), M = [[1, 1], [1, 2]] modulo 2**32: a frame of p pairs adds the sum of
    M**(p-1-i) (a_i, a_i + b_i), and the sums go on by M**p from frame to frame."""
    out = np.zeros((n, 2), np.uint64)
    if n == 0:
        return out
    raw = np.frombuffer(data, np.uint8, count=n * frame, offset=32).reshape(n, frame)
    body = np.concatenate([raw[:, :8], raw[:, 24:]], axis=1)
    words = body.view(f"{order}u4").astype(np.uint64).reshape(n, -1, 2)
    a, ab = words[:, :, 0], words[:, :, 0] + words[:, :, 1]
    powers, whole = _pair_powers(words.shape[1])
    # uint64 arithmetic wraps modulo 2**64, a multiple of 2**32: the low 32 bits are right
    add0 = (a * powers[:, 0] + ab * powers[:, 1]).sum(axis=1) & _MASK
    add1 = (a * powers[:, 2] + ab * powers[:, 3]).sum(axis=1) & _MASK
    s0, s1 = start
    m00, m01, m10, m11 = whole
    for k, (x0, x1) in enumerate(zip(add0.tolist(), add1.tolist(), strict=True)):
        s0, s1 = (m00 * s0 + m01 * s1 + x0) & _MASK, (m10 * s0 + m11 * s1 + x1) & _MASK
        out[k] = s0, s1
    return out


_MASK = 0xFFFFFFFF


@functools.lru_cache(maxsize=4)
def _pair_powers(pairs: int) -> tuple[npt.NDArray[np.uint64], tuple[int, int, int, int]]:
    """M**(pairs-1-i) for each pair i of a frame, as rows (m00, m01, m10, m11), and M**pairs."""
    mats: list[tuple[int, int, int, int]] = []
    m = (1, 0, 0, 1)
    for _ in range(pairs):
        mats.append(m)
        a, b, c, d = m  # m @ [[1, 1], [1, 2]]
        m = ((a + b) & _MASK, (a + 2 * b) & _MASK, (c + d) & _MASK, (c + 2 * d) & _MASK)
    return np.array(mats[::-1], np.uint64), m


class Journal:
    @classmethod
    def open_checked(cls, path: Path, *, durable: bool = True) -> Journal:
        """Open an existing journal to resume from it, after checking the whole log:
        the write-ahead log frame by frame, every page, every entry's checksum, and the
        events as one unbroken, checksummed sequence. Raises :class:`JournalCorrupt`."""
        if not path.exists():
            wal = path.with_name(path.name + "-wal")
            left = " (its write-ahead log is still there)" if wal.exists() else ""
            raise JournalCorrupt(f"{path.name} is missing{left}")
        check_wal(path)
        journal = cls(path, durable=durable)
        try:
            journal.verify()
        except BaseException:
            journal._db.close()
            raise
        return journal

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
        self._pending_rows: tuple[bytes | None, int, int, int] | None = None
        # the events so far as one checksummed sequence: (newest seq, CRC of their bodies)
        log_state = self.get("log") or {"seq": 0, "crc": 0}
        self._log_seq, self._log_crc = int(log_state["seq"]), int(log_state["crc"])
        self._chained = (self._log_seq, self._log_crc)

    def verify(self) -> None:
        """Check the whole journal (see :meth:`open_checked`)."""
        try:
            keys = [k for (k,) in self._db.execute("SELECT key FROM kv")]
            entries = {key: self.get(key) for key in keys}  # each against its checksum
            state = entries.get("log")  # None: written before the events' checksum
            # the tables' pages (kv's were checked on opening); the events' pages are
            # all read, and their bodies checked, by the events check below: late in a
            # long run they are most of the file, and reading them twice made a late
            # restart about 4 ms slower. A journal from before the events' checksum has
            # no events check: SQLite's check covers its events.
            for table in _PAGE_CHECKED if state is not None else (*_PAGE_CHECKED, "events"):
                check = self._db.execute(f"PRAGMA quick_check({table})").fetchone()
                if check is None or check[0] != "ok":
                    raise JournalCorrupt(
                        f"{self.path.name}: integrity check failed ({table}): {check}"
                    )
            self.rows()
            if state is not None:
                self._verify_events(state)
        except sqlite3.DatabaseError as exc:
            raise JournalCorrupt(f"{self.path.name}: {exc}") from None

    def _verify_events(self, state: dict[str, Any]) -> None:
        """The events against ``state``, the "log" entry (their newest seq and CRC)."""
        row = self._db.execute("SELECT MIN(seq), MAX(seq) FROM events").fetchone()
        newest = 0 if row[1] is None else int(row[1])
        if row[0] is not None and int(row[0]) != 1:
            self._events_missing(1)
        # pieces of consecutive events, each read by SQLite as one value: their bodies'
        # bytes as stored, in order, and how many there are (a gap: fewer than the span)
        crc = 0
        for first in range(1, newest + 1, _EVENTS_PIECE):
            last = min(first + _EVENTS_PIECE - 1, newest)
            n, body = self._db.execute(_EVENTS_PIECE_SQL, (first, last)).fetchone()
            if n != last - first + 1:
                self._events_missing(first)
            crc = zlib.crc32(body or b"", crc)
        if crc != int(state["crc"]):
            crc = self._events_crc_by_row()  # the same, row by row in seq order (for sure)
        if newest != int(state["seq"]) or crc != int(state["crc"]):
            raise JournalCorrupt(
                f"{self.path.name}: its events (1..{newest}) do not match their checksum "
                f"(1..{state['seq']})"
            )

    def _events_missing(self, first: int) -> NoReturn:
        """Raise naming the first events missing from ``first`` on."""
        expect = first
        rows = self._db.execute("SELECT seq FROM events WHERE seq >= ? ORDER BY seq", (first,))
        for (seq,) in rows:
            if seq != expect:
                break
            expect += 1
        else:
            seq = expect
        if seq > expect:
            raise JournalCorrupt(
                f"{self.path.name}: events {expect}..{seq - 1} are missing from its log"
            )
        raise JournalCorrupt(f"{self.path.name}: its events are out of their sequence")

    def _events_crc_by_row(self) -> int:
        crc = 0
        for (body,) in self._db.execute("SELECT CAST(body AS BLOB) FROM events ORDER BY seq"):
            crc = zlib.crc32(body, crc)
        return crc

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
                self._chain_events()
            if self._pending_cycles:
                self._db.executemany(
                    "INSERT OR REPLACE INTO cycles(cycle, body) VALUES (?, ?)",
                    self._pending_cycles,
                )
                self._pending_cycles = []
            if self._pending_rows is not None:
                body, stored, events, after = self._pending_rows
                self._db.execute(
                    "INSERT OR REPLACE INTO carried(id, body, crc) VALUES (0, ?, ?)",
                    (body, zlib.crc32(body or b"")),
                )
                self._put("stored", {"seq": stored, "events": events, "after": after})
                self._pending_rows = None
            self._db.execute("COMMIT")
            self._pending_events = []
            self._log_seq, self._log_crc = self._chained
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _chain_events(self) -> None:
        """Add the new events to the log's checksum (inside the open transaction)."""
        seq, crc = self._log_seq, self._log_crc
        for n, body in sorted(self._pending_events):
            if n == seq + 1:
                seq, crc = n, zlib.crc32(body.encode(), crc)
        if seq != self._log_seq:
            self._put("log", {"seq": seq, "crc": crc})
        self._chained = (seq, crc)

    def log_event(self, event: Event) -> None:
        self._pending_events.append((event.seq, event.to_json()))

    def add_cycle(self, row: dict[str, Any]) -> None:
        self._pending_cycles.append((int(row["cycle"]), json.dumps(row, default=str)))

    def set_rows(
        self, body: bytes | None, stored_seq: int, events_seq: int = 0, after: int = -1
    ) -> None:
        """Rows not yet on disk elsewhere (an Arrow IPC stream) and the row they follow
        (``after``: every row up to it is on disk), carried by the next commit (replacing
        those the one before carried); the newest row the run holds and the newest event
        on disk in events.jsonl: witnesses of what a resume must find."""
        self._pending_rows = (body, stored_seq, events_seq, after)

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

    def stored_seq(self) -> int | None:
        """The newest row the run held at the last commit that said (see set_rows)."""
        stored = self.get("stored")
        return None if stored is None else int(stored["seq"])

    def carried_after(self) -> int | None:
        """Every row up to this one was on disk at the last commit that said."""
        stored = self.get("stored")
        return None if stored is None or "after" not in stored else int(stored["after"])

    def events_seq(self) -> int:
        """The newest event events.jsonl held on disk at the last commit that said."""
        stored = self.get("stored")
        return 0 if stored is None else int(stored.get("events", 0))

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
