"""Run directories as the web app reads them: the list, one run's facts, its per-cycle
table and its events (the time series: :mod:`.series`).

Reads only files (``docs`` of the run directory: ``run.json``, ``data/part-*.parquet``,
``data/staging-*.arrow`` while a hardware run goes, ``cycles.parquet``, ``events.jsonl``),
so it works while the run is being written. What is read is cached by file name, size
and modification time: a finished chunk is read once; the list of runs re-reads only
``run.json`` files that changed.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["RunNotFound", "RunsDir"]

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_EVENT_CACHE = 16


def _parse_lines(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for line in raw.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            out.append(ev)
    return out


class RunNotFound(LookupError):
    """No run directory of that id (or an id that cannot be one)."""


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def epoch(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


class RunsDir:
    """The run directories under ``root``: listing and per-run files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._meta: dict[str, tuple[tuple[int, int] | None, dict[str, Any]]] = {}
        # run id -> (inode, bytes read, events)
        self._events: OrderedDict[str, tuple[int, int, list[dict[str, Any]]]] = OrderedDict()
        self._event_locks: dict[str, threading.Lock] = {}
        self._cycles: dict[str, tuple[tuple[int, int], list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def path(self, run_id: str) -> Path:
        """The directory of ``run_id``; :class:`RunNotFound` for anything else."""
        if not _RUN_ID.match(run_id) or run_id in (".", ".."):
            raise RunNotFound(f"{run_id!r} is not a run id")
        p = self.root / run_id
        if not (p / "run.json").is_file() and not (p / "data").is_dir():
            raise RunNotFound(f"no run {run_id!r} in {self.root}")
        return p

    def meta(self, run_id: str) -> dict[str, Any]:
        """``run.json`` of a run (cached by size and mtime), plus ``t0``: the wall time of
        run time 0, from the first event or the creation time."""
        p = self.path(run_id) / "run.json"
        key = _stat_key(p)
        with self._lock:
            hit = self._meta.get(run_id)
            if hit is not None and hit[0] == key:
                return hit[1]
        try:
            loaded = json.loads(p.read_text(encoding="utf-8"))
            meta: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            meta = {}
        meta.setdefault("run_id", run_id)
        meta["t0"] = self._t0(run_id, meta)
        with self._lock:
            self._meta[run_id] = (key, meta)
        return meta

    def _t0(self, run_id: str, meta: dict[str, Any]) -> float | None:
        try:
            with open(self.root / run_id / "events.jsonl", encoding="utf-8") as fh:
                first = json.loads(fh.readline())
            return float(first["wall_time"]) - float(first["run_time_s"])
        except (OSError, ValueError, KeyError, TypeError):
            return epoch(meta.get("created"))

    def summaries(self, limit: int = 500) -> list[dict[str, Any]]:
        """The newest ``limit`` runs (by directory name: ids start with a time stamp)."""
        try:
            names = sorted(
                (e.name for e in os.scandir(self.root) if e.is_dir() and _RUN_ID.match(e.name)),
                reverse=True,
            )
        except OSError:
            return []
        out: list[dict[str, Any]] = []
        for name in names:
            if len(out) >= limit:
                break
            try:
                m = self.meta(name)
            except RunNotFound:
                continue
            proto = m.get("protocol") if isinstance(m.get("protocol"), dict) else {}
            cell = m.get("cell") if isinstance(m.get("cell"), dict) else {}
            assert isinstance(proto, dict) and isinstance(cell, dict)
            out.append(
                {
                    "run_id": name,
                    "protocol": proto.get("name"),
                    "cell_id": cell.get("cell_id") or cell.get("sample_id"),
                    "station": m.get("station"),
                    "position": m.get("position"),
                    "state": m.get("state"),
                    "reason": m.get("reason"),
                    "simulated": m.get("simulated"),
                    "created": epoch(m.get("created")),
                    "ended": epoch(m.get("ended")),
                    "cycles": m.get("cycles"),
                }
            )
        return out

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of ``events.jsonl``, read on from where the last call stopped (a
        line still being written is left for the next call)."""
        p = self.path(run_id) / "events.jsonl"
        with self._lock:
            lock = self._event_locks.setdefault(run_id, threading.Lock())
        with lock:
            try:
                st = p.stat()
            except OSError:
                return []
            with self._lock:
                hit = self._events.get(run_id)
            ino, offset, events = hit if hit is not None else (st.st_ino, 0, [])
            if ino != st.st_ino or st.st_size < offset:
                offset, events = 0, []  # replaced or cut: read it again
            if st.st_size > offset:
                with open(p, "rb") as fh:
                    fh.seek(offset)
                    raw = fh.read(st.st_size - offset)
                done = raw.rfind(b"\n") + 1
                events = events + _parse_lines(raw[:done])
                offset += done
            with self._lock:
                self._events[run_id] = (st.st_ino, offset, events)
                self._events.move_to_end(run_id)
                while len(self._events) > _EVENT_CACHE:
                    self._events.popitem(last=False)
            return events

    def events_tail(self, run_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events, reading the file from its end (a run page's first
        look at a long run need not read ten thousand events)."""
        with self._lock:
            hit = self._events.get(run_id)
        if hit is not None:
            return self.events(run_id)[-limit:]
        p = self.path(run_id) / "events.jsonl"
        try:
            with open(p, "rb") as fh:
                end = fh.seek(0, os.SEEK_END)
                pos, raw = end, b""
                while pos > 0 and raw.count(b"\n") <= limit + 1:
                    step = min(pos, 65536)
                    pos -= step
                    fh.seek(pos)
                    raw = fh.read(step) + raw
        except OSError:
            return []
        raw = raw[: raw.rfind(b"\n") + 1]  # a line being written waits
        if pos > 0:
            raw = raw[raw.find(b"\n") + 1 :]  # the first line may be cut
        return _parse_lines(raw)[-limit:]

    def cycles(self, run_id: str) -> list[dict[str, Any]]:
        """Per-cycle rows: ``cycles.parquet`` when written, else the ``cycle_ended`` events."""
        path = self.path(run_id) / "cycles.parquet"
        key = _stat_key(path)
        if key is not None:
            with self._lock:
                hit = self._cycles.get(run_id)
            if hit is not None and hit[0] == key:
                return hit[1]
            try:
                rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
            except (OSError, pa.ArrowException):
                rows = []
            if rows:
                with self._lock:
                    self._cycles[run_id] = (key, rows)
                    while len(self._cycles) > _EVENT_CACHE:
                        self._cycles.pop(next(iter(self._cycles)))
                return rows
        return [
            dict(e.get("data") or {}) for e in self.events(run_id) if e.get("kind") == "cycle_ended"
        ]
