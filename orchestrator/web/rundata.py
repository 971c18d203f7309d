"""Run directories as the web app reads them: the list, one run's facts, its time series
(decimated for a plot), its per-cycle table and its events.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["RunNotFound", "RunsDir", "SeriesCache", "decimate"]

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
SERIES = ("voltage_V", "current_A", "temperature_C")
_READ = ["time_s", *SERIES]  # record_seq is not read: run time orders the records too
_EVENT_CACHE = 16


class RunNotFound(LookupError):
    """No run directory of that id (or an id that cannot be one)."""


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _epoch(iso: Any) -> float | None:
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
        self._events: OrderedDict[str, tuple[tuple[int, int] | None, list[dict[str, Any]]]] = (
            OrderedDict()
        )
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
            return _epoch(meta.get("created"))

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
                    "created": _epoch(m.get("created")),
                    "ended": _epoch(m.get("ended")),
                    "cycles": m.get("cycles"),
                }
            )
        return out

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of ``events.jsonl`` (a torn last line is skipped)."""
        p = self.path(run_id) / "events.jsonl"
        key = _stat_key(p)
        with self._lock:
            hit = self._events.get(run_id)
            if hit is not None and hit[0] == key:
                return hit[1]
        events: list[dict[str, Any]] = []
        try:
            with open(p, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(ev, dict):
                        events.append(ev)
        except OSError:
            pass
        with self._lock:
            self._events[run_id] = (key, events)
            self._events.move_to_end(run_id)
            while len(self._events) > _EVENT_CACHE:
                self._events.popitem(last=False)
        return events

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


@dataclass
class _Series:
    """One run's time series as read so far: finished chunks plus the staged tail."""

    chunks: dict[str, tuple[int, int]] = field(default_factory=dict)
    cols: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    staged: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    staged_key: tuple[Any, ...] = ()
    version: tuple[Any, ...] = ()
    loading: threading.Lock = field(default_factory=threading.Lock)

    def view(self) -> dict[str, npt.NDArray[np.float64]]:
        if not self.staged or not len(self.staged["time_s"]):
            return self.cols
        return {c: np.concatenate([self.cols[c], self.staged[c]]) for c in self.cols}


def _empty() -> dict[str, npt.NDArray[np.float64]]:
    return {c: np.empty(0) for c in _READ}


def _arrays(table: pa.Table) -> dict[str, npt.NDArray[np.float64]]:
    out = {}
    for c in _READ:
        if c in table.column_names:
            out[c] = np.asarray(table.column(c).to_numpy(), dtype=np.float64)
        else:
            out[c] = np.full(table.num_rows, np.nan)
    return out


def _read_chunk(path: Path) -> pa.Table:
    names = set(pq.read_schema(path).names)
    return pq.read_table(path, columns=[c for c in _READ if c in names])


def _read_staging(path: Path) -> list[pa.RecordBatch]:
    """The complete batches of a staging stream being written (a torn tail is left)."""
    batches: list[pa.RecordBatch] = []
    try:
        with pa.OSFile(str(path), "rb") as f:
            reader = pa.ipc.open_stream(f)
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
    except (pa.ArrowInvalid, OSError):
        pass
    return batches


class SeriesCache:
    """Time series of the runs recently looked at (``max_runs``, least recent dropped)."""

    def __init__(self, runs: RunsDir, max_runs: int = 4) -> None:
        self.runs = runs
        self.max_runs = max_runs
        self._cache: OrderedDict[str, _Series] = OrderedDict()
        self._windows: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def arrays(self, run_id: str) -> dict[str, npt.NDArray[np.float64]]:
        """``time_s``, V, I and T of every stored record, in order."""
        data = self.runs.path(run_id) / "data"
        with self._lock:
            s = self._cache.pop(run_id, None) or _Series(cols=_empty())
            self._cache[run_id] = s
            while len(self._cache) > self.max_runs:
                self._cache.popitem(last=False)
        with s.loading:  # one reader per run: a second caller waits and finds it read
            return self._update(s, data)

    def _update(self, s: _Series, data: Path) -> dict[str, npt.NDArray[np.float64]]:
        try:
            entries = sorted(os.scandir(data), key=lambda e: e.name)
        except OSError:
            return s.view()
        new = [
            e
            for e in entries
            if e.name.startswith("part-") and e.name.endswith(".parquet") and e.name not in s.chunks
        ]
        if new:
            # Parquet decoding releases the GIL: read new chunks side by side
            with ThreadPoolExecutor(max_workers=min(4, len(new))) as pool:
                tables = list(pool.map(lambda e: _arrays(_read_chunk(Path(e.path))), new))
            for e in new:
                st = e.stat()
                s.chunks[e.name] = (st.st_size, st.st_mtime_ns)
            s.cols = {c: np.concatenate([s.cols[c], *(t[c] for t in tables)]) for c in _READ}
            _sort(s.cols)
        staging = [
            e for e in entries if e.name.startswith("staging-") and e.name.endswith(".arrow")
        ]
        key = tuple((e.name, e.stat().st_size) for e in staging)
        if key != s.staged_key:
            s.staged_key = key
            s.staged = self._staged(staging, s.cols)
        s.version = (tuple(s.chunks.items()), key)
        return s.view()

    def window(self, run_id: str, lo: float | None, hi: float | None, n: int) -> dict[str, Any]:
        """The records to draw in [lo, hi] at ``n`` pixel columns (see :func:`decimate`),
        as JSON-ready lists; the whole run is kept for the next page that asks."""
        cols = self.arrays(run_id)
        with self._lock:
            s = self._cache.get(run_id)
            key = (run_id, s.version if s is not None else None, lo, hi, n)
            hit = self._windows.get(key)
        if hit is not None:
            return hit
        t = cols["time_s"]
        idx = decimate(t, [cols["voltage_V"], cols["current_A"]], lo, hi, n)
        i0 = 0 if lo is None else int(np.searchsorted(t, lo, "left"))
        i1 = len(t) if hi is None else int(np.searchsorted(t, hi, "right"))
        out = {
            "t": np.round(t[idx], 3).tolist(),
            "V": _nulls(np.round(cols["voltage_V"][idx], 6)),
            "I": _nulls(np.round(cols["current_A"][idx], 9)),
            "T": _nulls(np.round(cols["temperature_C"][idx], 3)),
            "stored": len(t),
            "shown": len(idx),
            "decimated": len(idx) < max(0, i1 - i0),
            "t_min": float(t[0]) if len(t) else None,
            "t_max": float(t[-1]) if len(t) else None,
        }
        if lo is None and hi is None:
            with self._lock:
                self._windows[key] = out
                while len(self._windows) > 2 * self.max_runs:
                    self._windows.pop(next(iter(self._windows)))
        return out

    @staticmethod
    def _staged(
        staging: list[os.DirEntry[str]], cols: dict[str, npt.NDArray[np.float64]]
    ) -> dict[str, npt.NDArray[np.float64]]:
        batches = [b for e in staging for b in _read_staging(Path(e.path))]
        if not batches:
            return {}
        part = _arrays(pa.Table.from_batches(batches))
        t = cols["time_s"]
        last = float(t[-1]) if len(t) else -np.inf
        keep = part["time_s"] > last  # rows a chunk already holds are dropped
        out = {c: v[keep] for c, v in part.items()}
        _sort(out)
        return out


def _nulls(a: npt.NDArray[np.float64]) -> list[float | None]:
    """A list for JSON: NaN (a missing reading) becomes None."""
    values: list[float | None] = a.tolist()
    if np.isnan(a).any():
        values = [None if v != v else v for v in values]
    return values


def _sort(cols: dict[str, npt.NDArray[np.float64]]) -> None:
    key = cols["time_s"]
    if len(key) > 1 and bool(np.any(key[1:] < key[:-1])):
        order = np.argsort(key, kind="stable")
        for c in cols:
            cols[c] = cols[c][order]


def decimate(
    t: npt.NDArray[np.float64],
    ys: list[npt.NDArray[np.float64]],
    lo: float | None,
    hi: float | None,
    buckets: int,
) -> npt.NDArray[np.intp]:
    """Indices of the points to draw of the sorted times ``t`` in [lo, hi].

    With more than ``4 * buckets`` points in the window, the window is cut into
    ``buckets`` equal time spans and each keeps its first and last point and the points
    of the minimum and maximum of every series in ``ys``: a line drawn through them
    looks like the full one at that width (peaks, steps and gaps stay). One point either
    side of the window is kept so lines run to the edges.
    """
    n = len(t)
    i0 = 0 if lo is None else int(np.searchsorted(t, lo, "left"))
    i1 = n if hi is None else int(np.searchsorted(t, hi, "right"))
    i0, i1 = max(0, i0 - 1), min(n, i1 + 1)
    if i1 - i0 <= 4 * max(1, buckets):
        return np.arange(i0, i1)
    tw = t[i0:i1]
    edges = np.linspace(tw[0], tw[-1], buckets + 1)
    starts = np.unique(np.searchsorted(tw, edges[:-1], "left"))
    counts = np.diff(np.append(starts, len(tw)))
    keep = [starts, starts + counts - 1]
    bucket = np.repeat(np.arange(len(starts)), counts)
    for y in ys:
        yw = y[i0:i1]
        finite = np.isfinite(yw)
        if not finite.any():
            continue
        for fill, reduce in ((np.inf, np.minimum), (-np.inf, np.maximum)):
            vals = np.where(finite, yw, fill)
            best = reduce.reduceat(vals, starts)
            hit = np.flatnonzero((vals == best[bucket]) & finite)
            _, first = np.unique(bucket[hit], return_index=True)
            keep.append(hit[first])
    return np.unique(np.concatenate(keep)) + i0
