"""The agent's mirror of its runs in the lab database, through a durable local outbox.

Every event a run emits is appended to ``<runs>/lab-outbox.sqlite`` (SQLite WAL; a
committed row survives the process being killed) and the latest status of each run is
kept there too. :meth:`Mirror.drain` sends them to PostgreSQL in order, in batches, with
inserts keyed by ``(run_id, seq)`` that ignore what is already there, and deletes them
locally only after PostgreSQL committed: a lost database or a killed agent delays the
mirror, never loses or doubles a row. Run states follow the events (``state_seq`` keeps
an older event from overwriting a newer state), the per-cycle table follows
``cycle_ended`` events.

The run directory stays authoritative: :meth:`Mirror.backfill` re-reads a run's
``events.jsonl`` (at resume and at the end of a run) so an event committed to the journal
just before a kill, but not yet to the outbox, is mirrored as well.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from pathlib import Path
from typing import Any

from ..events import Event, RunStatus, Telemetry
from .db import AsyncLink

__all__ = ["FINAL_STATES", "Mirror"]

log = logging.getLogger("labrig.lab.mirror")

FINAL_STATES = ("finished", "aborted", "failed")
_STATE_OF = {
    "run_started": "running",
    "run_resumed": "running",
    "paused": "paused",
    "resumed": "running",
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,          -- event | final
    run_id TEXT NOT NULL,
    seq INTEGER,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status (run_id TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite numbers become null (PostgreSQL's jsonb has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if x is None or isinstance(x, bool | int | str):
        return x
    return str(x)


def _dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), separators=(",", ":"), allow_nan=False)


class Mirror:
    """An ``EventSink`` into the outbox, and the drain from it to the lab database."""

    def __init__(self, path: Path, *, batch: int = 500) -> None:
        self.path = path
        self.batch = batch
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # survives kill -9 (not power loss)
        self.db.executescript(_SCHEMA)
        self.sent = 0
        self.failures = 0

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ EventSink
    def publish_event(self, event: Event) -> None:
        if event.seq < 1:
            return  # a replayed event the journal already holds
        body = {"kind": event.kind.value, "wall_time": event.wall_time,
                "run_time_s": event.run_time_s, "data": event.data}  # fmt: skip
        self.db.execute(
            "INSERT INTO items (kind, run_id, seq, body) VALUES ('event', ?, ?, ?)",
            (event.run_id, event.seq, _dumps(body)),
        )

    def publish_status(self, status: RunStatus) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO status (run_id, body) VALUES (?, ?)",
            (status.run_id, _dumps(status.to_dict())),
        )

    def publish_telemetry(self, telemetry: Telemetry) -> None:
        return None  # live readings go to MQTT, not to the database

    # ------------------------------------------------------------------ more input
    def final(
        self, run_id: str, state: str, reason: str | None, last_seq: int | None = None
    ) -> None:
        """A run's state as the agent ended or parked it (also without any event).

        ``last_seq``: the run's events end there (its events.jsonl, read after the run
        ended); mirrored events numbered after it are removed.
        """
        self.db.execute(
            "INSERT INTO items (kind, run_id, seq, body) VALUES ('final', ?, ?, ?)",
            (run_id, last_seq, _dumps({"state": state, "reason": reason})),
        )

    def backfill(self, run_dir: Path) -> int:
        """Queue every event of ``run_dir/events.jsonl`` again; returns the highest seq.

        The journal is authoritative: an event emitted just before the process was killed
        may not have reached it, and the resumed run then numbers a new event the same.
        Inserts therefore overwrite what the mirror holds under that number.
        """
        path = run_dir / "events.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return 0
        rows = []
        for line in lines:
            try:
                d = json.loads(line)
                rows.append((str(d["run_id"]), int(d["seq"]), _dumps({
                    "kind": d["kind"], "wall_time": d["wall_time"],
                    "run_time_s": d["run_time_s"], "data": d.get("data") or {}})))  # fmt: skip
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line
        with self.db:
            self.db.executemany(
                "INSERT INTO items (kind, run_id, seq, body) VALUES ('event', ?, ?, ?)", rows
            )
        return max((r[1] for r in rows), default=0)

    def pending(self) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM items").fetchone()
        (m,) = self.db.execute("SELECT count(*) FROM status").fetchone()
        return int(n) + int(m)

    # ------------------------------------------------------------------ drain
    async def drain(self, link: AsyncLink) -> int:
        """Send everything pending, in order; returns the rows sent. Raises
        :class:`~.db.LabUnavailable` when the database goes away (the rest waits)."""
        total = 0
        while True:
            items = self.db.execute(
                "SELECT id, kind, run_id, seq, body FROM items ORDER BY id LIMIT ?", (self.batch,)
            ).fetchall()
            statuses = self.db.execute("SELECT run_id, body FROM status").fetchall()
            if not items and not statuses:
                return total
            await link.call(lambda conn, i=items, s=statuses: _apply(conn, i, s), deadline_s=30.0)
            if items:
                self.db.execute("DELETE FROM items WHERE id <= ?", (items[-1][0],))
            for run_id, body in statuses:
                # keep a status that changed while we were sending
                self.db.execute("DELETE FROM status WHERE run_id = ? AND body = ?", (run_id, body))
            total += len(items) + len(statuses)
            self.sent += len(items) + len(statuses)


_INSERT_EVENT = """
INSERT INTO events (run_id, seq, kind, wall_time, run_time_s, data)
VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (run_id, seq) DO UPDATE SET
    kind = EXCLUDED.kind, wall_time = EXCLUDED.wall_time, run_time_s = EXCLUDED.run_time_s,
    data = EXCLUDED.data
"""
_STATE = """
UPDATE runs SET state = %s, state_seq = %s,
    started_at = CASE WHEN %s AND started_at IS NULL THEN to_timestamp(%s) ELSE started_at END
WHERE run_id = %s AND state_seq < %s AND state NOT IN ('finished', 'aborted', 'failed')
"""
_ENDED = """
UPDATE runs SET state = %s, reason = %s, state_seq = %s, ended_at = to_timestamp(%s)
WHERE run_id = %s AND state_seq < %s
"""
_FINAL = """
UPDATE runs SET state = %s, reason = coalesce(%s, reason),
    ended_at = CASE WHEN %s THEN coalesce(ended_at, clock_timestamp()) ELSE ended_at END
WHERE run_id = %s AND state NOT IN ('finished', 'aborted', 'failed')
"""
_CYCLE = """
INSERT INTO cycles (run_id, cycle, data) VALUES (%s, %s, %s::jsonb)
ON CONFLICT (run_id, cycle) DO UPDATE SET data = EXCLUDED.data
"""
_STATUS = """
UPDATE runs SET cycle = %s, step = %s, eta_s = %s, run_time_s = %s, status_at = %s
WHERE run_id = %s AND (status_at IS NULL OR status_at <= %s)
"""


def _event_effects(run_id: str, seq: int, d: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    kind, data, wall = d["kind"], d.get("data") or {}, float(d["wall_time"])
    out: list[tuple[str, tuple[Any, ...]]] = []
    if kind in _STATE_OF:
        started = kind == "run_started"
        out.append((_STATE, (_STATE_OF[kind], seq, started, wall, run_id, seq)))
    elif kind == "run_ended":
        out.append((_ENDED, (str(data.get("state", "failed")), data.get("reason"), seq, wall,
                             run_id, seq)))  # fmt: skip
    elif kind == "cycle_ended" and isinstance(data.get("cycle"), int):
        out.append((_CYCLE, (run_id, data["cycle"], _dumps(data))))
    return out


async def _apply(conn: Any, items: list[Any], statuses: list[Any]) -> None:
    events: list[tuple[Any, ...]] = []
    effects: list[tuple[str, tuple[Any, ...]]] = []
    touched: set[str] = set()
    for _id, kind, run_id, seq, body in items:
        d = json.loads(body)
        touched.add(run_id)
        if kind == "event":
            events.append((run_id, seq, d["kind"], d["wall_time"], d["run_time_s"],
                           _dumps(d.get("data") or {})))  # fmt: skip
            effects.extend(_event_effects(run_id, seq, d))
        else:
            ended = d["state"] in FINAL_STATES
            effects.append((_FINAL, (d["state"], d.get("reason"), ended, run_id)))
            if seq is not None and ended:
                effects.append(("DELETE FROM events WHERE run_id = %s AND seq > %s", (run_id, seq)))
                effects.append((
                    "UPDATE runs SET last_seq = %s WHERE run_id = %s", (seq, run_id)))  # fmt: skip
    async with conn.transaction(), conn.cursor() as cur:
        if events:
            await cur.executemany(_INSERT_EVENT, events)
            last: dict[str, int] = {}
            for e in events:
                last[e[0]] = max(last.get(e[0], 0), e[1])
            await cur.executemany(
                "UPDATE runs SET last_seq = greatest(last_seq, %s) WHERE run_id = %s",
                [(s, r) for r, s in last.items()],
            )
        for sql, args in effects:
            await cur.execute(sql, args)
        for run_id, body in statuses:
            st = json.loads(body)
            touched.add(run_id)
            await cur.execute(_STATUS, (st.get("cycle"), st.get("step"), st.get("eta_s"),
                                        st.get("run_time_s"), st.get("updated"), run_id,
                                        st.get("updated")))  # fmt: skip
        if touched:
            await cur.execute(
                "SELECT pg_notify('labrig_runs', %s)", (",".join(sorted(touched))[:7000],)
            )
