"""The run directory: everything a run leaves behind, written as it goes.

```
runs/<run-id>/
  run.json         what ran: protocol, cell, station, versions, state, times
  protocol.yaml    the protocol exactly as run
  journal.sqlite   durable position and event log (see orchestrator.journal)
  data/            time series as Parquet chunks, readable while the run goes on
  cycles.parquet   one row per cycle (also cycles.csv)
  eis/             one table per impedance spectrum, named by cycle
  events.jsonl     every event, one JSON object per line
```

Chunks are written to a temporary name and renamed, so a reader (or a crash) never sees a
half-written file. Units are in the column names.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from labrig.protocols.rundir import CYCLE_COLUMNS, DATA_COLUMNS

from .events import Event, RunState

__all__ = [
    "CYCLE_COLUMNS",
    "DATA_COLUMNS",
    "RunStore",
    "new_run_id",
]

_SCHEMA = pa.schema(
    [
        ("time_s", pa.float64()),
        ("cycle", pa.int32()),
        ("step", pa.int32()),
        ("step_type", pa.dictionary(pa.int8(), pa.string())),
        ("current_A", pa.float64()),
        ("voltage_V", pa.float64()),
        ("charge_capacity_Ah", pa.float64()),
        ("discharge_capacity_Ah", pa.float64()),
        ("temperature_C", pa.float64()),
        ("record_seq", pa.int64()),
    ]
)

# a staging file holding this many batches is rewritten as one (restarts stay quick)
STAGING_BATCHES = 64
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def new_run_id(protocol_name: str, cell_id: str | None = None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    parts = [stamp, _SAFE_ID.sub("-", protocol_name).strip("-")[:40] or "run"]
    if cell_id:
        parts.append(_SAFE_ID.sub("-", cell_id).strip("-")[:24])
    parts.append(secrets.token_hex(4))
    return "-".join(parts)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("labrig", "numpy", "pandas", "pyarrow", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


@dataclass
class _Pending:
    cols: dict[str, list[npt.NDArray[Any]]] = field(
        default_factory=lambda: {c: [] for c in DATA_COLUMNS}
    )
    rows: int = 0


def _atomic_write_bytes(path: Path, data: bytes, durable: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class RunStore:
    """Writes one run directory. Not thread-safe; owned by the run's task."""

    def __init__(
        self,
        root: Path,
        *,
        chunk_rows: int | None = None,
        durable: bool = True,
        staging: bool | None = None,
        stage_every_s: float = 0.0,
    ) -> None:
        self.root = root
        self.staging = durable if staging is None else staging
        # Rows reach the staging log at most every ``stage_every_s`` (one write and one
        # fsync for all rows since the last), and always on ``sync()``, which the
        # executor calls before the journal records a position. Rows not yet staged
        # when the process dies are still on the instrument and are read again on
        # resume: the journal's position never runs ahead of the staged rows.
        self.stage_every_s = stage_every_s
        self._unstaged: list[Mapping[str, npt.NDArray[Any]]] = []
        self._staged_at = time.monotonic()
        self._abandoned = False
        if chunk_rows is None:
            # With a staging log, a restart re-reads what is staged: smaller chunks keep
            # that (and so the restart) short. Without one, fewer, larger files.
            chunk_rows = 50_000 if self.staging else 250_000
        self.data_dir = root / "data"
        self.eis_dir = root / "eis"
        self.chunk_rows = chunk_rows
        self.durable = durable
        self._pending = _Pending()
        self._chunk_index = len(list(self.data_dir.glob("part-*.parquet"))) if root.exists() else 0
        self._cycles: list[dict[str, Any]] = []
        self._cycles_source: Callable[[], list[dict[str, Any]]] | None = None
        self._events_file: Any = None
        self._meta: dict[str, Any] = {}
        self.rows_written = 0
        self.last_flushed_seq = -1
        # Rows not yet in a Parquet chunk are also appended to an Arrow IPC stream, so a
        # killed process loses none of them (durable stores only; dry runs skip it).
        self._staging: Any = None
        self._staging_path: Path | None = None
        self._staging_files: list[Path] = []
        self._staging_serial = 0  # numbers the staging files of the current chunk
        self._staged_batches = 0  # batches in the open staging file
        self._active_from = 0  # first pending entry held by the open staging file

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        out_dir: Path,
        run_id: str,
        *,
        protocol_yaml: str,
        meta: Mapping[str, Any],
        chunk_rows: int | None = None,
        durable: bool = True,
        staging: bool | None = None,
        stage_every_s: float = 0.0,
    ) -> RunStore:
        root = out_dir / run_id
        root.mkdir(parents=True, exist_ok=False)
        store = cls(
            root, chunk_rows=chunk_rows, durable=durable, staging=staging,
            stage_every_s=stage_every_s,
        )  # fmt: skip
        store.data_dir.mkdir()
        store.eis_dir.mkdir()
        _atomic_write_bytes(root / "protocol.yaml", protocol_yaml.encode(), durable)
        store._meta = {
            "run_id": run_id,
            **meta,
            "versions": _versions(),
            "state": RunState.running.value,
            "created": datetime.now(UTC).isoformat(),
        }
        store._write_meta()
        store._events_file = open(root / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        return store

    @classmethod
    def open_existing(
        cls,
        root: Path,
        *,
        durable: bool = True,
        staging: bool | None = None,
        chunk_rows: int | None = None,
        stage_every_s: float = 0.0,
    ) -> RunStore:
        """Re-open a run directory to continue it: committed chunks stay as they are;
        rows that were only staged are taken back as pending."""
        store = cls(
            root, durable=durable, staging=staging, chunk_rows=chunk_rows,
            stage_every_s=stage_every_s,
        )  # fmt: skip
        store._meta = json.loads((root / "run.json").read_text())
        parts = sorted(store.data_dir.glob("part-*.parquet"))
        chunks = store._meta.get("chunks")
        known = chunks is not None and chunks.get("count") == len(parts)
        if known and chunks is not None:
            # run.json keeps the running totals: no need to open every chunk
            store.rows_written = int(chunks["rows"])
            parts = parts[-1:]  # chunks are in sequence order: the last one has the max
        for part in parts:
            md = pq.read_metadata(part)
            if not known:
                store.rows_written += md.num_rows
            seq_col = md.schema.names.index("record_seq")
            for rg in range(md.num_row_groups):
                stats = md.row_group(rg).column(seq_col).statistics
                if stats is not None and stats.has_min_max:
                    store.last_flushed_seq = max(store.last_flushed_seq, int(stats.max))
        for tmp in store.data_dir.glob("*.tmp"):
            tmp.unlink()  # a chunk that was being written when the process died
        staged = sorted(store.data_dir.glob("staging-*.arrow"))
        tables = [t for path in staged for t in _read_staging(path)]
        if tables:
            # a compaction or a chunk that was cut off by the crash can leave rows in two
            # places: each record once, and none that a chunk already holds
            table = _unique_after(pa.concat_tables(tables), store.last_flushed_seq)
            if table.num_rows:
                store._queue(table)
        store._staging_files = staged
        serials = [int(p.stem.rsplit("-", 1)[-1]) for p in staged if p.stem[-1:].isdigit()]
        store._staging_serial = max(serials, default=-1) + 1  # never reuse a name
        store._events_file = open(root / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        return store

    @property
    def stored_seq(self) -> int:
        """The newest record sequence number held (in chunks or staged)."""
        best = self.last_flushed_seq
        for arr in self._pending.cols["record_seq"]:
            if len(arr):
                best = max(best, int(np.max(arr)))
        return best

    @property
    def meta(self) -> dict[str, Any]:
        return self._meta

    def update_meta(self, **fields: Any) -> None:
        self._meta.update(fields)
        self._write_meta()

    def _write_meta(self) -> None:
        text = json.dumps(self._meta, indent=2, default=str, allow_nan=False)
        _atomic_write_bytes(self.root / "run.json", text.encode(), self.durable)

    # ------------------------------------------------------------------ records

    def append_records(self, cols: Mapping[str, npt.NDArray[Any]]) -> None:
        """Queue rows (all DATA_COLUMNS as equal-length arrays); writes full chunks."""
        n = len(cols["time_s"])
        if n == 0:
            return
        for c in DATA_COLUMNS:
            self._pending.cols[c].append(np.asarray(cols[c]))
        self._pending.rows += n
        if self._pending.rows >= self.chunk_rows:
            self.flush_records()  # the chunk holds them: nothing to stage
        elif self.staging:
            self._unstaged.append(cols)
            if time.monotonic() - self._staged_at >= self.stage_every_s:
                self.sync()

    def sync(self) -> None:
        """Stage every row appended so far (one write, one fsync on durable stores)."""
        self._staged_at = time.monotonic()
        if not self._unstaged:
            return
        parts, self._unstaged = self._unstaged, []
        first = len(self._pending.cols["time_s"]) - len(parts)  # their place in pending
        if len(parts) == 1:
            self._stage(_to_table(parts[0]), first)
        else:
            table = _to_table({c: np.concatenate([p[c] for p in parts]) for c in DATA_COLUMNS})
            self._stage(table, first)

    def _queue(self, table: pa.Table) -> None:
        for c in DATA_COLUMNS:
            col = table.column(c)
            if c == "step_type":
                arr: npt.NDArray[Any] = _kind_values(col)
            else:
                arr = col.to_numpy()
            self._pending.cols[c].append(arr)
        self._pending.rows += table.num_rows

    def _stage(self, table: pa.Table, first: int) -> None:
        if self._staging is None:
            self._open_staging(first)
        assert self._staging is not None
        sink, writer = self._staging
        writer.write_table(table)
        sink.flush()
        if self.durable:
            os.fsync(sink.fileno())
        self._staged_batches += 1
        if self._staged_batches >= STAGING_BATCHES:
            self._compact_staging()

    def _open_staging(self, first: int) -> None:
        self._staging_path = self._next_staging_path()
        sink = pa.OSFile(str(self._staging_path), "wb")
        self._staging = (sink, pa.ipc.new_stream(sink, _SCHEMA))
        self._staging_files.append(self._staging_path)
        self._staged_batches = 0
        self._active_from = first  # pending entries from here on are in this file

    def _next_staging_path(self) -> Path:
        n = self._staging_serial
        self._staging_serial += 1
        return self.data_dir / f"staging-{self._chunk_index:05d}-{n:03d}.arrow"

    def _compact_staging(self) -> None:
        """Rewrite the open staging file's many small batches as one batch in a file of
        its own (complete before the small ones go), so a restart reads a few large
        batches, not thousands of small ones. Files compacted before are not touched:
        each row is rewritten once."""
        if self._staging is None or self._staging_path is None:
            return
        start = self._active_from
        table = _to_table({c: np.concatenate(self._pending.cols[c][start:]) for c in DATA_COLUMNS})
        sink, writer = self._staging
        writer.close()
        sink.close()
        self._staging = None
        small = self._staging_path
        merged = self._next_staging_path()
        with pa.OSFile(str(merged), "wb") as out:
            with pa.ipc.new_stream(out, _SCHEMA) as w:
                w.write_table(table)
            out.flush()
            if self.durable:
                os.fsync(out.fileno())
        self._staging_files[self._staging_files.index(small)] = merged
        small.unlink(missing_ok=True)
        self._staged_batches = 0

    def _drop_staging(self) -> None:
        if self._staging is not None:
            sink, writer = self._staging
            writer.close()
            sink.close()
            self._staging = None
        for path in self._staging_files:
            path.unlink(missing_ok=True)
        self._staging_files = []
        self._staging_serial = 0

    def flush_records(self) -> None:
        """Write whatever is queued as one Parquet chunk (atomically)."""
        if self._pending.rows == 0:
            return
        table = _to_table({c: np.concatenate(self._pending.cols[c]) for c in DATA_COLUMNS})
        path = self.data_dir / f"part-{self._chunk_index:05d}.parquet"
        tmp = path.with_name(path.name + ".tmp")
        try:
            # zstd level 1: a third quicker to write than the default level, about as small
            pq.write_table(table, tmp, compression="zstd", compression_level=1)
        except OSError:
            tmp.unlink(missing_ok=True)  # never leave half a chunk behind
            raise
        if self.durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
        self._chunk_index += 1
        self.rows_written += table.num_rows
        self.last_flushed_seq = int(table.column("record_seq")[-1].as_py())
        self._pending = _Pending()
        self._unstaged = []
        if self.staging:
            self.update_meta(chunks={"count": self._chunk_index, "rows": self.rows_written})
        self._drop_staging()

    # ------------------------------------------------------------------ cycles, EIS, events

    def add_cycle(self, row: Mapping[str, Any]) -> None:
        self._cycles.append(dict(row))

    @property
    def cycles(self) -> list[dict[str, Any]]:
        if self._cycles_source is not None:
            source, self._cycles_source = self._cycles_source, None
            self._cycles = [dict(r) for r in source()] + self._cycles
        return self._cycles

    def replace_cycles(self, source: Callable[[], list[dict[str, Any]]]) -> None:
        """The cycles so far, read only when first needed (a restart stays quick)."""
        self._cycles = []
        self._cycles_source = source

    def write_cycles(self) -> None:
        rows = self.cycles
        # CYCLE_COLUMNS first, then any further column the rows carry (an import's
        # source_cycle), in the order they first appear
        extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in CYCLE_COLUMNS]
        names = [*CYCLE_COLUMNS, *extra]
        cols = {c: [r.get(c) for r in rows] for c in names}
        table = pa.table(cols) if rows else pa.table({c: [] for c in CYCLE_COLUMNS})
        tmp = self.root / "cycles.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.root / "cycles.parquet")
        lines = [",".join(names)]
        for r in rows:
            lines.append(",".join(_csv_cell(r.get(c)) for c in names))
        _atomic_write_bytes(self.root / "cycles.csv", ("\n".join(lines) + "\n").encode(), False)

    def write_eis(
        self,
        cycle: int,
        frequency_Hz: npt.NDArray[np.float64],
        z_real_ohm: npt.NDArray[np.float64],
        z_imag_ohm: npt.NDArray[np.float64],
        meta: Mapping[str, Any] | None = None,
    ) -> Path:
        """One spectrum: ``eis/cycle_00001.parquet`` (``_2`` etc. if one exists already)."""
        base = f"cycle_{cycle:05d}"
        path = self.eis_dir / f"{base}.parquet"
        n = 2
        while path.exists():
            path = self.eis_dir / f"{base}_{n}.parquet"
            n += 1
        table = pa.table(
            {
                "frequency_Hz": pa.array(frequency_Hz, pa.float64()),
                "z_real_ohm": pa.array(z_real_ohm, pa.float64()),
                "z_imag_ohm": pa.array(z_imag_ohm, pa.float64()),
            }
        )
        if meta:
            table = table.replace_schema_metadata({"labrig": json.dumps(dict(meta), default=str)})
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return path

    def reconcile_events(self, journal: Any) -> None:
        """Make events.jsonl hold exactly the journal's events, in order, once each.

        After a crash the file may lack its last lines (never flushed), end in a torn
        line, or hold lines the journal never committed (they will be emitted again).
        Only the file's tail is read, so this does not slow down as a run grows.
        """
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None
        path = self.root / "events.jsonl"
        last_ok = journal.max_event_seq()
        size = path.stat().st_size if path.exists() else 0
        with open(path, "ab+") as f:
            keep_to, file_seq = _tail_cut(f, size, last_ok)
            if keep_to is None:  # the tail does not reach far enough back: rewrite
                f.seek(0)
                f.truncate()
                file_seq = 0
            else:
                f.truncate(keep_to)
            missing = journal.events_after(file_seq)
            f.seek(0, os.SEEK_END)
            f.write("".join(e.to_json() + "\n" for e in missing).encode())
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        self._events_file = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def append_event(self, event: Event) -> None:
        if self._events_file is None:
            return
        self._events_file.write(event.to_json() + "\n")

    def flush_events(self) -> None:
        if self._events_file is not None:
            self._events_file.flush()
            if self.durable:
                os.fsync(self._events_file.fileno())

    def finish(self, state: RunState, reason: str | None = None) -> None:
        self.flush_records()
        self.write_cycles()
        self.flush_events()
        self.update_meta(
            state=state.value,
            reason=reason,
            ended=datetime.now(UTC).isoformat(),
            rows=self.rows_written,
            cycles=len(self.cycles),
        )

    def abandon(self) -> None:
        """Write nothing more, as if the process had been killed (drills and tests)."""
        self._abandoned = True

    def close(self) -> None:
        """Release files; never raises (a full disk was already reported by the run)."""
        if not self._abandoned:
            with contextlib.suppress(OSError):
                self.sync()
        if self._staging is not None:
            sink, writer = self._staging
            self._staging = None
            with contextlib.suppress(OSError):
                writer.close()
            with contextlib.suppress(OSError):
                sink.close()
        if self._events_file is not None:
            with contextlib.suppress(OSError):
                self._events_file.close()
            self._events_file = None


def _to_table(cols: Mapping[str, npt.NDArray[Any]]) -> pa.Table:
    arrays = []
    for name in DATA_COLUMNS:
        data = np.asarray(cols[name])
        if name == "step_type":
            arrays.append(_kinds(data))
        else:
            arrays.append(pa.array(data, type=_SCHEMA.field(name).type))
    return pa.Table.from_arrays(arrays, schema=_SCHEMA)


def _unique_after(table: pa.Table, after_seq: int) -> pa.Table:
    """Rows with ``record_seq > after_seq``, each seq once, in seq order."""
    seq = table.column("record_seq").to_numpy()
    if seq.size and bool(np.all(seq[1:] > seq[:-1])) and int(seq[0]) > after_seq:
        return table
    values, first = np.unique(seq, return_index=True)
    return table.take(pa.array(first[values > after_seq]))


def _kind_values(col: pa.ChunkedArray) -> npt.NDArray[Any]:
    """The step-type column back as Python strings (object array), decoding each
    chunk's small dictionary once instead of every row."""
    if not col.chunks:
        return np.empty(0, dtype=object)
    if pa.types.is_dictionary(col.type) and col.null_count == 0:
        # one dictionary for all chunks (staged batches each carry their own), then one
        # lookup of every row's index
        col = col.unify_dictionaries()
        values = np.array(col.chunks[0].dictionary.to_pylist(), dtype=object)
        idx = pa.concat_arrays([c.indices for c in col.chunks]).to_numpy(zero_copy_only=False)
        return values[idx]  # type: ignore[no-any-return]
    return col.cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)  # type: ignore[no-any-return]


def _kinds(data: npt.NDArray[Any]) -> pa.Array:
    """The step-type column as the schema's int8 dictionary, built straight from the few
    distinct values (a string array, an encode and a cast cost ten times more)."""
    if data.size > 256:  # a chunk: pandas' hash table, not a Python loop
        import pandas as pd

        codes, uniques = pd.factorize(data, use_na_sentinel=False)
        values = list(uniques)
    else:
        seen: dict[Any, int] = {}
        codes = np.array([seen.setdefault(v, len(seen)) for v in data.tolist()], dtype=np.int64)
        values = list(seen)
    if len(values) <= 127 and all(isinstance(v, str) for v in values):
        return pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int8)), pa.array(values, type=pa.string())
        )
    # many kinds, or a missing one: Arrow's own encoding (nulls stay null)
    return (
        pa.array(data, type=pa.string()).dictionary_encode().cast(_SCHEMA.field("step_type").type)
    )


def _tail_cut(f: Any, size: int, last_ok: int, window: int = 1 << 16) -> tuple[int | None, int]:
    """Where to cut an events file so it ends with a whole line of seq <= ``last_ok``.

    Returns (byte offset to keep up to, seq of the last kept line), or (None, 0) when
    the window at the end of the file does not reach back far enough.
    """
    if size == 0:
        return 0, 0
    start = max(0, size - window)
    f.seek(start)
    tail = f.read(size - start)
    offset = size
    lines = tail.split(b"\n")
    # the part after the last newline is torn (or empty)
    offset -= len(lines[-1])
    for line in reversed(lines[:-1]):
        begin = offset - len(line) - 1
        if start > 0 and begin <= start:
            return None, 0  # the first line in the window may be cut: not trusted
        try:
            seq = int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            offset = begin
            continue
        if seq <= last_ok:
            return offset, seq
        offset = begin
    return (0, 0) if start == 0 else (None, 0)


def _read_staging(path: Path) -> list[pa.Table]:
    """Every complete batch of a staging stream; a torn tail (a killed writer) is dropped."""
    try:  # an intact stream in one call (much quicker than batch by batch)
        with pa.memory_map(str(path), "r") as f:
            whole = pa.ipc.open_stream(f).read_all()
        return [whole] if whole.num_rows else []
    except (pa.ArrowInvalid, OSError):
        pass
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
    return [pa.Table.from_batches(batches, schema=_SCHEMA)] if batches else []


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not np.isfinite(v):
            return ""
        return repr(round(v, 10))
    return str(v)


def wall_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat()
