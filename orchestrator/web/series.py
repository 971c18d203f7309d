"""A run's V, I and T against time, cut down to what a plot of a given width shows.

:func:`decimate` keeps, per pixel column, the first and last point and the extremes of V
and I. :class:`SeriesCache` serves plot windows of a run without reading every record
each time:

- every finished chunk (``data/part-*.parquet``, written once and renamed into place) is
  summarised once: decimated to :data:`SUMMARY_BUCKETS` columns (a few per cent of its
  records). The summaries are kept in memory and **on disk** in a cache directory (the
  user's cache, never the run directory), keyed by run id and the chunk's name, size and
  modification time, so a restarted server draws a 1000-cycle run from a few hundred
  kilobytes;
- the whole-run view is the summaries plus the staged tail (``data/staging-*.arrow``
  while a hardware run goes) decimated again to the plot's width;
- a zoom reads in full only the chunks that are partly in view, or whose summary would
  be too coarse at that zoom; chunks read in full are kept (a few, least recent dropped).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from .rundata import RunNotFound, RunsDir

__all__ = ["SUMMARY_BUCKETS", "SeriesCache", "decimate", "default_cache_dir", "warm_up"]

log = logging.getLogger("labrig.web")

SERIES = ("voltage_V", "current_A", "temperature_C")
COLS = ("time_s", *SERIES)  # record_seq is not read: run time orders the records too
#: pixel columns a chunk's summary keeps (each up to 6 points: first, last, V and I extremes)
SUMMARY_BUCKETS = 4096
Arrays = dict[str, npt.NDArray[np.float64]]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/labrig/web`` (``~/.cache/labrig/web``; on Windows under
    ``%LOCALAPPDATA%``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA")
    return (Path(base) if base else Path.home() / ".cache") / "labrig" / "web"


def warm_up() -> None:
    """Pay pyarrow's one-time start (it imports pandas on first use: about a second) now,
    not on the first run page somebody opens."""
    import io

    buf = io.BytesIO()
    pq.write_table(pa.table({"t": np.zeros(2)}), buf, compression="zstd")
    pq.read_table(io.BytesIO(buf.getvalue()))


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


# ---------------------------------------------------------------------------- reading


def _empty() -> Arrays:
    return {c: np.empty(0) for c in COLS}


def _arrays(table: pa.Table) -> Arrays:
    out = {}
    for c in COLS:
        if c in table.column_names:
            out[c] = np.asarray(table.column(c).to_numpy(), dtype=np.float64)
        else:
            out[c] = np.full(table.num_rows, np.nan)
    _sort(out)
    return out


def _read_chunk(path: Path) -> Arrays:
    names = set(pq.read_schema(path).names)
    return _arrays(pq.read_table(path, columns=[c for c in COLS if c in names]))


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


def _sort(cols: Arrays) -> None:
    key = cols["time_s"]
    if len(key) > 1 and bool(np.any(key[1:] < key[:-1])):
        order = np.argsort(key, kind="stable")
        for c in cols:
            cols[c] = cols[c][order]


def _concat(parts: list[Arrays]) -> Arrays:
    parts = [p for p in parts if p and len(p["time_s"])]
    if not parts:
        return _empty()
    if len(parts) == 1:
        return parts[0]
    out = {c: np.concatenate([p[c] for p in parts]) for c in COLS}
    _sort(out)
    return out


def _take(cols: Arrays, idx: npt.NDArray[np.intp]) -> Arrays:
    return {c: cols[c][idx] for c in COLS}


def _nulls(a: npt.NDArray[np.float64]) -> list[float | None]:
    """A list for JSON: NaN (a missing reading) becomes None."""
    values: list[float | None] = a.tolist()
    if np.isnan(a).any():
        values = [None if v != v else v for v in values]
    return values


# ---------------------------------------------------------------------------- summaries


@dataclass
class Chunk:
    """One finished chunk: its size in records, time span and summary."""

    name: str
    path: Path
    key: tuple[int, int]  # size, mtime_ns
    rows: int
    summary: Arrays

    @property
    def t_min(self) -> float:
        return float(self.summary["time_s"][0]) if self.rows else np.inf

    @property
    def t_max(self) -> float:
        return float(self.summary["time_s"][-1]) if self.rows else -np.inf


class SummaryStore:
    """Chunk summaries on disk (``None``: in memory only)."""

    def __init__(self, root: Path | None, runs_root: Path) -> None:
        tag = hashlib.sha256(str(runs_root.resolve()).encode()).hexdigest()[:12]
        self.root = None if root is None else root / "overview" / tag
        self._warned = False

    def _path(self, run_id: str, name: str, key: tuple[int, int]) -> Path | None:
        if self.root is None:
            return None
        return self.root / run_id / f"{Path(name).stem}-{key[0]}-{key[1]}.parquet"

    def has(self, run_id: str, name: str, key: tuple[int, int]) -> bool:
        path = self._path(run_id, name, key)
        return path is not None and path.is_file()

    def load(self, run_id: str, name: str, key: tuple[int, int]) -> tuple[int, Arrays] | None:
        path = self._path(run_id, name, key)
        if path is None or not path.is_file():
            return None
        try:
            table = pq.read_table(path)
            rows = int((table.schema.metadata or {}).get(b"labrig_rows", b"-1"))
        except (OSError, ValueError, pa.ArrowException):
            return None
        if rows < 0 or any(c not in table.column_names for c in COLS):
            return None
        return rows, _arrays(table)

    def save(self, run_id: str, name: str, key: tuple[int, int], rows: int, s: Arrays) -> None:
        path = self._path(run_id, name, key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for old in path.parent.glob(f"{Path(name).stem}-*.parquet"):
                old.unlink(missing_ok=True)  # the same chunk, rewritten since
            table = pa.table({c: s[c] for c in COLS}).replace_schema_metadata(
                {"labrig_rows": str(rows)}
            )
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("run overviews are kept in memory only: %s", exc)
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)


def _summarise(cols: Arrays) -> Arrays:
    t = cols["time_s"]
    idx = decimate(t, [cols["voltage_V"], cols["current_A"]], None, None, SUMMARY_BUCKETS)
    return _take(cols, idx)


# ---------------------------------------------------------------------------- the cache


@dataclass
class _Run:
    """What is known of one run's time series: its chunks and the staged tail."""

    chunks: dict[str, Chunk] = field(default_factory=dict)
    staged: Arrays = field(default_factory=_empty)
    staged_key: tuple[Any, ...] = ()
    version: tuple[Any, ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ordered(self) -> list[Chunk]:
        return [self.chunks[k] for k in sorted(self.chunks)]


class SeriesCache:
    """Plot windows of the runs recently looked at (``max_runs``, least recent dropped)."""

    def __init__(
        self, runs: RunsDir, cache_dir: Path | None = None, *, max_runs: int = 8,
        max_full_chunks: int = 6,
    ) -> None:  # fmt: skip
        self.runs = runs
        self.store = SummaryStore(cache_dir, runs.root)
        self.max_runs = max_runs
        self.max_full_chunks = max_full_chunks
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._full: OrderedDict[tuple[str, tuple[int, int]], Arrays] = OrderedDict()
        self._windows: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._warmed: dict[str, list[str]] = {}
        self._readers: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.summaries_made = 0  # chunks read in full to summarise them (for tests, bench)

    # -- state ------------------------------------------------------------------------
    def _reader(self, run_id: str) -> threading.Lock:
        """One reader per run (a page and the background warmer never read it twice)."""
        with self._lock:
            return self._readers.setdefault(run_id, threading.Lock())

    def _run(self, run_id: str) -> _Run:
        with self._lock:
            s = self._runs.pop(run_id, None) or _Run(lock=self._readers.setdefault(
                run_id, threading.Lock()))  # fmt: skip
            self._runs[run_id] = s
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
        return s

    def refresh(self, run_id: str) -> _Run:
        """Bring the run's chunks and staged tail up to date (one reader per run)."""
        data = self.runs.path(run_id) / "data"
        s = self._run(run_id)
        with s.lock:
            try:
                entries = sorted(os.scandir(data), key=lambda e: e.name)
            except OSError:
                return s
            parts = {}
            for e in entries:
                if e.name.startswith("part-") and e.name.endswith(".parquet"):
                    st = e.stat()
                    parts[e.name] = (Path(e.path), (st.st_size, st.st_mtime_ns))
            gone = [n for n, c in s.chunks.items() if parts.get(n, (None, None))[1] != c.key]
            for name in gone:
                del s.chunks[name]
            new = [(n, p, k) for n, (p, k) in parts.items() if n not in s.chunks]
            if new:
                self._add_chunks(run_id, s, new)
            staging = [
                e for e in entries if e.name.startswith("staging-") and e.name.endswith(".arrow")
            ]
            key = tuple((e.name, e.stat().st_size) for e in staging)
            if key != s.staged_key:
                s.staged_key = key
                s.staged = self._staged(staging, s)
            s.version = (tuple((n, c.key) for n, c in sorted(s.chunks.items())), key)
        return s

    def _add_chunks(self, run_id: str, s: _Run, new: list[tuple[str, Path, Any]]) -> None:
        def one(item: tuple[str, Path, tuple[int, int]]) -> Chunk:
            name, path, key = item
            hit = self.store.load(run_id, name, key)
            if hit is not None:
                return Chunk(name, path, key, hit[0], hit[1])
            cols = _read_chunk(path)
            with self._lock:
                self.summaries_made += 1
                self._remember_full((str(path), key), cols)
            summary = _summarise(cols)
            self.store.save(run_id, name, key, len(cols["time_s"]), summary)
            return Chunk(name, path, key, len(cols["time_s"]), summary)

        # Parquet decoding releases the GIL: chunks side by side
        with ThreadPoolExecutor(max_workers=min(4, len(new))) as pool:
            for chunk in pool.map(one, new):
                s.chunks[chunk.name] = chunk

    def _remember_full(self, key: tuple[str, tuple[int, int]], cols: Arrays) -> None:
        self._full[key] = cols
        self._full.move_to_end(key)
        while len(self._full) > self.max_full_chunks:
            self._full.popitem(last=False)

    def _full_chunk(self, c: Chunk) -> Arrays:
        key = (str(c.path), c.key)
        with self._lock:
            hit = self._full.get(key)
            if hit is not None:
                self._full.move_to_end(key)
                return hit
        cols = _read_chunk(c.path)
        with self._lock:
            self._remember_full(key, cols)
        return cols

    @staticmethod
    def _staged(staging: list[os.DirEntry[str]], s: _Run) -> Arrays:
        batches = [b for e in staging for b in _read_staging(Path(e.path))]
        if not batches:
            return _empty()
        part = _arrays(pa.Table.from_batches(batches))
        last = max((c.t_max for c in s.chunks.values()), default=-np.inf)
        keep = part["time_s"] > last  # rows a chunk already holds are dropped
        return {c: v[keep] for c, v in part.items()}

    # -- windows ----------------------------------------------------------------------
    def window(self, run_id: str, lo: float | None, hi: float | None, n: int) -> dict[str, Any]:
        """The records to draw in [lo, hi] at ``n`` pixel columns, JSON-ready; whole-run
        views are kept per run version."""
        s = self.refresh(run_id)
        whole = lo is None and hi is None
        key = (run_id, s.version, n)
        if whole:
            with self._lock:
                hit = self._windows.get(key)
            if hit is not None:
                return hit
        chunks = s.ordered()
        stored = sum(c.rows for c in chunks) + len(s.staged["time_s"])
        if whole:
            cols, inside = _concat([c.summary for c in chunks] + [s.staged]), stored
        else:
            cols, inside = self._zoomed(chunks, s.staged, lo, hi, n)
        t = cols["time_s"]
        idx = decimate(t, [cols["voltage_V"], cols["current_A"]], lo, hi, n)
        t_min, t_max = self._span(s)
        out = {
            "t": np.round(t[idx], 3).tolist(),
            "V": _nulls(np.round(cols["voltage_V"][idx], 6)),
            "I": _nulls(np.round(cols["current_A"][idx], 9)),
            "T": _nulls(np.round(cols["temperature_C"][idx], 3)),
            "stored": stored,
            "shown": len(idx),
            "decimated": len(idx) < inside,
            "t_min": t_min,
            "t_max": t_max,
        }
        if whole:
            with self._lock:
                self._windows[key] = out
                while len(self._windows) > 2 * self.max_runs:
                    self._windows.popitem(last=False)
        return out

    @staticmethod
    def _span(s: _Run) -> tuple[float | None, float | None]:
        """Run time of the first and the last stored record."""
        chunks = s.ordered()
        st = s.staged["time_s"]
        first = chunks[0].t_min if chunks else (float(st[0]) if len(st) else None)
        last = float(st[-1]) if len(st) else (chunks[-1].t_max if chunks else None)
        return first, last

    def _zoomed(
        self, chunks: list[Chunk], staged: Arrays, lo: float | None, hi: float | None, n: int
    ) -> tuple[Arrays, int]:
        """The points a zoom on [lo, hi] needs: summaries of chunks wholly inside that are
        fine enough at this width, every record of the others in view, and a summary
        either side so lines run to the edges."""
        a = -np.inf if lo is None else lo
        b = np.inf if hi is None else hi
        span = max(b - a, 1e-9) if np.isfinite(b - a) else None
        parts: list[Arrays] = []
        inside = 0
        for k, c in enumerate(chunks):
            if c.t_max < a or c.t_min > b:
                before = c.t_max < a and (k + 1 == len(chunks) or chunks[k + 1].t_max >= a)
                after = c.t_min > b and (k == 0 or chunks[k - 1].t_min <= b)
                near = before or after
                if near:
                    parts.append(c.summary)
                continue
            whole_in = a <= c.t_min and c.t_max <= b
            px = n if span is None else n * (c.t_max - c.t_min) / span
            if whole_in and px * 4 <= SUMMARY_BUCKETS:
                parts.append(c.summary)
                inside += c.rows
            else:
                full = self._full_chunk(c)
                parts.append(full)
                t = full["time_s"]
                inside += int(np.searchsorted(t, b, "right") - np.searchsorted(t, a, "left"))
        if len(staged["time_s"]):
            parts.append(staged)
            t = staged["time_s"]
            inside += int(np.searchsorted(t, b, "right") - np.searchsorted(t, a, "left"))
        return _concat(parts), inside

    def warm(self, run_id: str) -> int:
        """Summarise to disk the run's chunks that have no summary yet (in the background,
        for the page to come); returns how many it made. Nothing is kept in memory."""
        if self.store.root is None:
            return 0
        try:
            entries = list(os.scandir(self.runs.path(run_id) / "data"))
        except (RunNotFound, OSError):
            return 0
        parts = sorted(e.name for e in entries if e.name.startswith("part-")
                       and e.name.endswith(".parquet"))  # fmt: skip
        with self._lock:
            if self._warmed.get(run_id) == parts:
                return 0
        with self._reader(run_id):
            made = self._warm_parts(run_id, entries, parts)
        with self._lock:
            self._warmed[run_id] = parts
            self.summaries_made += made
        return made

    def _warm_parts(self, run_id: str, entries: list[os.DirEntry[str]], parts: list[str]) -> int:
        made = 0
        for e in sorted(entries, key=lambda e: e.name):
            if e.name not in parts:
                continue
            st = e.stat()
            key = (st.st_size, st.st_mtime_ns)
            if self.store.has(run_id, e.name, key):
                continue
            try:
                cols = _read_chunk(Path(e.path))
            except (OSError, pa.ArrowException) as exc:
                log.debug("overview of %s/%s not made: %s", run_id, e.name, exc)
                continue
            self.store.save(run_id, e.name, key, len(cols["time_s"]), _summarise(cols))
            made += 1
        return made
