"""RunStore: writes one run directory (see the package's docstring for its layout)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from labrig.protocols.rundir import CYCLE_COLUMNS, DATA_COLUMNS

from ..events import Event, RunState
from . import events_file
from .reopen import CHUNK_SUMS, CarriesRows, ChunkCheck, Reopened, StoreDamaged, reopen
from .staging import StagingLog
from .tables import (
    atomic_write_bytes,
    concat_cols,
    csv_cell,
    ipc_bytes,
    joined_cols,
    unique_after,
)
from .writer import Writer

__all__ = ["RunStore", "new_run_id", "wall_iso"]

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
# events buffered in memory before they are handed to the writer (without an fsync)
_EVENT_LINES = 256


def new_run_id(protocol_name: str, cell_id: str | None = None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    parts = [stamp, _SAFE_ID.sub("-", protocol_name).strip("-")[:40] or "run"]
    if cell_id:
        parts.append(_SAFE_ID.sub("-", cell_id).strip("-")[:24])
    parts.append(secrets.token_hex(4))
    return "-".join(parts)


def _versions() -> dict[str, str]:
    """The versions a run records (read once per process: reading a package's metadata
    costs milliseconds, and a station starts a thousand runs at once)."""
    return dict(_read_versions())


@functools.cache
def _read_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("labrig", "numpy", "pandas", "pyarrow", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


class HoldsEvents(Protocol):
    """The journal as events.jsonl's reconciliation sees it."""

    def max_event_seq(self) -> int: ...

    def events_after(self, seq: int) -> list[Event]: ...

    def events_seq(self) -> int: ...


# rows handed to the writer: a table, or the appended arrays it is made of
_Rows: TypeAlias = "pa.Table | list[dict[str, npt.NDArray[Any]]]"


def _last_seq(table: pa.Table) -> int:
    return int(table.column("record_seq")[-1].as_py()) if table.num_rows else -1


class RunStore:
    """Writes one run directory. Called from the run's task only; the file work runs
    inline, or on a worker thread while :meth:`writing` is entered."""

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
        # executor calls before the journal records a position. While a writer drains
        # off the loop, ``sync()`` hands the rows not yet durable to the journal, whose
        # commit of the position carries them: the position never runs ahead of rows.
        self.stage_every_s = stage_every_s
        if chunk_rows is None:
            # With a staging log, a restart re-reads what is staged: smaller chunks keep
            # that (and so the restart) short. Without one, fewer, larger files.
            chunk_rows = 50_000 if self.staging else 250_000
        self.data_dir = root / "data"
        self.eis_dir = root / "eis"
        self.chunk_rows = chunk_rows
        self.durable = durable
        self.cell_files = True  # data/, eis/ and the cycle table (False: furnace runs)
        self.rows_written = 0  # rows handed to chunks
        self.last_flushed_seq = -1
        self.writer = Writer(max_rows_waiting=8 * chunk_rows)
        self._files = StagingLog(self.data_dir, durable=durable)
        self._pending: list[pa.Table | dict[str, npt.NDArray[Any]]] = []
        self._pending_rows = 0
        self._pending_seq = -1  # the newest row pending
        self._chunks = 0  # chunks handed to the writer
        self._unstaged: list[dict[str, npt.NDArray[Any]]] = []
        self._staged_at = time.monotonic()
        # handed to the writer, maybe not on disk: (the newest seq, the rows)
        self._not_durable: list[tuple[int, _Rows]] = []
        self._durable_seq = -1  # every row up to here is on disk (set by the writer)
        self._journal: CarriesRows | None = None
        self._cycles: list[dict[str, Any]] = []
        self._cycles_source: Callable[[], list[dict[str, Any]]] | None = None
        # events.jsonl, opened only while lines go to it (None: the run keeps no events);
        # a file kept open per run is a descriptor per channel on a station of thousands
        self._events_path: Path | None = None
        self._event_lines: list[str] = []
        self._event_seq = 0  # the newest event handed to the file
        self._events_durable = 0  # the newest event on disk in events.jsonl
        self._eis_names: set[Path] = set()
        self._meta: dict[str, Any] = {}
        self._abandoned = False

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
        cell_files: bool = True,
    ) -> RunStore:
        """A new run directory. ``cell_files=False`` (furnace runs): no ``data/``, ``eis/``
        or cycle table, which such a run would leave empty."""
        root = out_dir / run_id
        root.mkdir(parents=True, exist_ok=False)
        store = cls(
            root, chunk_rows=chunk_rows, durable=durable, staging=staging,
            stage_every_s=stage_every_s,
        )  # fmt: skip
        store.cell_files = cell_files
        if cell_files:
            store.data_dir.mkdir()
            store.eis_dir.mkdir()
        atomic_write_bytes(root / "protocol.yaml", protocol_yaml.encode(), durable)
        store._meta = {
            "run_id": run_id,
            **meta,
            "versions": _versions(),
            "state": RunState.running.value,
            "created": datetime.now(UTC).isoformat(),
        }
        store._write_meta()
        store._events_path = _touched(root / "events.jsonl")
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
        journal: CarriesRows | None = None,
        check: bool = False,
        chunks: ChunkCheck | None = None,
    ) -> RunStore:
        """Re-open a run directory to continue it: committed chunks stay as they are;
        rows that were only staged (or only in the journal's last commit) are taken back
        as pending. ``check`` (a resume): every chunk against its checksum, the staging
        log's checksums and links, and the rows the journal says the run held; damage
        raises :class:`StoreDamaged` before anything in the directory is changed
        (``chunks``: the chunks' check, started earlier)."""
        store = cls(
            root, durable=durable, staging=staging, chunk_rows=chunk_rows,
            stage_every_s=stage_every_s,
        )  # fmt: skip
        store._meta = json.loads((root / "run.json").read_text())
        found = reopen(
            store.data_dir, store._meta, journal, durable=durable, check=check, chunks=chunks
        )
        if found.damage:
            raise StoreDamaged(found.damage, found.intact_seq)
        store.reopened(found)
        store._events_path = _touched(root / "events.jsonl")
        return store

    def reopened(self, found: Reopened) -> None:
        """Take on what the run directory holds."""
        for tmp in self.data_dir.glob("*.tmp"):
            tmp.unlink()  # a chunk that was being written when the process died
        if found.carried.num_rows:
            # rows the journal's last commit carried: staged again so the log links up
            found.files.append(found.carried)
        self.rows_written = found.rows
        self.last_flushed_seq = found.last_flushed
        self._files = found.files
        self._chunks = found.files.chunk_index
        self._durable_seq = found.files.last_seq
        table = found.pending
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
            self._pending_seq = _last_seq(table)

    @contextlib.asynccontextmanager
    async def writing(self, journal: CarriesRows | None = None) -> AsyncIterator[RunStore]:
        """Write off the event loop until the context ends (which waits for the final
        writes). ``journal``: its position commits carry the rows not yet on disk."""
        self._journal = journal
        try:
            async with self.writer.running():
                yield self
        finally:
            self._journal = None

    @property
    def write_error(self) -> BaseException | None:
        return self.writer.error

    @property
    def stored_seq(self) -> int:
        """The newest record sequence number held (in chunks, staged or pending)."""
        return max(self.last_flushed_seq, self._pending_seq)

    @property
    def meta(self) -> dict[str, Any]:
        return self._meta

    def update_meta(self, **fields: Any) -> None:
        self._meta.update(fields)
        self._write_meta()

    def _write_meta(self) -> None:
        text = json.dumps(self._meta, indent=2, default=str, allow_nan=False).encode()
        path, durable = self.root / "run.json", self.durable
        self.writer.submit(lambda: atomic_write_bytes(path, text, durable))

    # ------------------------------------------------------------------ records

    def append_records(self, cols: Mapping[str, npt.NDArray[Any]]) -> None:
        """Queue rows (all DATA_COLUMNS as equal-length arrays); writes full chunks."""
        self.writer.check()
        n = len(cols["time_s"])
        if n == 0:
            return
        part = {c: np.asarray(cols[c]) for c in DATA_COLUMNS}
        self._pending.append(part)
        self._pending_rows += n
        self._pending_seq = max(self._pending_seq, int(np.max(part["record_seq"])))
        if self._pending_rows >= self.chunk_rows:
            self.flush_records()  # the chunk holds them: nothing to stage
        elif self.staging:
            self._unstaged.append(part)
            if time.monotonic() - self._staged_at >= self.stage_every_s:
                self._stage_unstaged()

    def sync(self) -> None:
        """Every row appended so far is durable when the journal next commits: staged
        now (inline), or carried by that commit (while writing off the loop)."""
        self.writer.check()
        self._stage_unstaged()
        if self.writer.draining and self._journal is not None and self.staging:
            durable = self._durable_seq
            self._journal.set_rows(
                self._rows_not_durable(durable), self.stored_seq, self._events_durable, durable
            )

    def _stage_unstaged(self) -> None:
        self._staged_at = time.monotonic()
        if not self._unstaged:
            return
        parts, self._unstaged = self._unstaged, []
        # the rows become an Arrow table on the writer's thread, not the event loop's
        last = max(int(np.max(p["record_seq"])) for p in parts)
        rows = sum(len(p["record_seq"]) for p in parts)
        self._submit_rows(parts, last, rows, lambda: self._files.append(joined_cols(parts)))

    def _submit_rows(self, rows: _Rows, last: int, count: int, write: Callable[[], None]) -> None:
        def job() -> None:
            write()
            self._durable_seq = max(self._durable_seq, last)

        if self.writer.draining:
            self._not_durable.append((last, rows))
        self.writer.submit(job, count)

    def _rows_not_durable(self, durable: int) -> bytes | None:
        self._not_durable = [(last, r) for last, r in self._not_durable if last > durable]
        parts = [r if isinstance(r, pa.Table) else concat_cols(r) for _, r in self._not_durable]
        if self._unstaged:
            parts.append(concat_cols(self._unstaged))
        if not parts:
            return None
        table = unique_after(pa.concat_tables(parts), durable)
        return ipc_bytes(table) if table.num_rows else None

    def _pending_table(self) -> pa.Table:
        """The pending rows as one table: runs of appended arrays converted at once."""
        parts: list[pa.Table] = []
        arrays: list[dict[str, npt.NDArray[Any]]] = []
        for p in [*self._pending, None]:
            if isinstance(p, dict):
                arrays.append(p)
                continue
            if arrays:
                parts.append(concat_cols(arrays))
                arrays = []
            if p is not None:
                parts.append(p)
        return pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0]

    def flush_records(self) -> None:
        """Write whatever is queued as one Parquet chunk (atomically)."""
        self.writer.check()
        self._flush()

    def _flush(self) -> None:
        if self._pending_rows == 0:
            return
        table = self._pending_table()
        self._pending, self._pending_rows, self._unstaged = [], 0, []
        self._pending_seq = -1
        self.rows_written += table.num_rows
        self.last_flushed_seq = max(self.last_flushed_seq, _last_seq(table))
        self._chunks += 1
        meta = None
        if self.staging:
            self._meta["chunks"] = {"count": self._chunks, "rows": self.rows_written}
            meta = json.dumps(self._meta, indent=2, default=str, allow_nan=False).encode()
        self._submit_rows(
            table, _last_seq(table), table.num_rows, lambda: self._write_chunk(table, meta)
        )

    def _write_chunk(self, table: pa.Table, meta: bytes | None) -> None:
        path = self.data_dir / f"part-{self._files.chunk_index:05d}.parquet"
        buf = pa.BufferOutputStream()
        # zstd level 1: a third quicker to write than the default level, about as small
        pq.write_table(table, buf, compression="zstd", compression_level=1)
        data = buf.getvalue()
        try:
            atomic_write_bytes(path, data.to_pybytes(), self.durable)
        except OSError:
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # never half a chunk
            raise
        self._files.chunk_sums.append([zlib.crc32(data), table.num_rows])
        sums = json.dumps({"crc32_rows": self._files.chunk_sums}).encode()
        atomic_write_bytes(self.data_dir / CHUNK_SUMS, sums, self.durable)
        if meta is not None:
            atomic_write_bytes(self.root / "run.json", meta, self.durable)
        self._files.chunk_written(_last_seq(table))

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
        if not self.cell_files:
            return
        rows = [dict(r) for r in self.cycles]
        root = self.root
        self.writer.submit(lambda: _write_cycles(root, rows))

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
        while path in self._eis_names or path.exists():
            path = self.eis_dir / f"{base}_{n}.parquet"
            n += 1
        self._eis_names.add(path)
        table = pa.table(
            {
                "frequency_Hz": pa.array(frequency_Hz, pa.float64()),
                "z_real_ohm": pa.array(z_real_ohm, pa.float64()),
                "z_imag_ohm": pa.array(z_imag_ohm, pa.float64()),
            }
        )
        if meta:
            table = table.replace_schema_metadata({"labrig": json.dumps(dict(meta), default=str)})

        def job() -> None:
            tmp = path.with_name(path.name + ".tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, path)

        self.writer.submit(job)
        return path

    def reconcile_events(self, journal: HoldsEvents) -> None:
        """Make events.jsonl hold exactly the journal's events, in order, once each.

        After a crash the file may lack its last lines (never flushed), end in a torn
        line, or hold lines the journal never committed (they will be emitted again).
        Only the file's tail is read, so this does not slow down as a run grows.
        """
        # lines not written yet go like the file's uncommitted tail: the journal's events
        # are written below, and the run emits the later ones again
        self._event_lines = []
        path = self.root / "events.jsonl"
        last_ok = journal.max_event_seq()
        size = path.stat().st_size if path.exists() else 0
        with open(path, "ab+") as f:
            keep_to, file_seq = events_file.tail_cut(f, size, last_ok)
            if keep_to is None:  # the tail does not reach far enough back: rewrite
                f.seek(0)
                f.truncate()
                file_seq = 0
            else:
                f.truncate(keep_to)
            missing = journal.events_after(file_seq)
            witness = journal.events_seq()
            self._note_repair(size, keep_to, file_seq, last_ok, witness)
            f.seek(0, os.SEEK_END)
            f.write("".join(e.to_json() + "\n" for e in missing).encode())
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        self._events_path = path

    def _note_repair(
        self, size: int, keep_to: int | None, file_seq: int, last_ok: int, witness: int
    ) -> None:
        """Say so in run.json when events.jsonl lacked events it had on disk when the
        journal last committed (``witness``): more than a crash explains."""
        if file_seq >= witness:
            return
        self._meta.setdefault("repairs", []).append(
            f"events.jsonl had lost events {file_seq + 1}..{witness} that were on disk "
            f"({size} bytes left); restored from the journal ({last_ok} events)"
        )

    def append_event(self, event: Event) -> None:
        if self._events_path is None:
            return
        self._event_lines.append(event.to_json() + "\n")
        self._event_seq = max(self._event_seq, event.seq)
        if len(self._event_lines) >= _EVENT_LINES:
            self._write_event_lines(flush=False)

    def flush_events(self) -> None:
        self.writer.check()
        self._write_event_lines(flush=True)

    def _write_event_lines(self, *, flush: bool) -> None:
        path = self._events_path
        if path is None:
            return
        text = "".join(self._event_lines)
        self._event_lines = []
        upto = self._event_seq

        def job() -> None:
            with open(path, "a", encoding="utf-8") as f:
                if text:
                    f.write(text)
                if flush:
                    f.flush()
                    if self.durable:
                        os.fsync(f.fileno())
            if flush:
                self._events_durable = max(self._events_durable, upto)

        if text or flush:
            self.writer.submit(job, keep=True)

    def finish(self, state: RunState, reason: str | None = None) -> None:
        """The run's final writes: queued even after a failed write (each may still
        succeed: the final state in run.json above all); then that failure is raised."""
        self._flush()
        self.write_cycles()
        self._write_event_lines(flush=True)
        self.update_meta(
            state=state.value,
            reason=reason,
            ended=datetime.now(UTC).isoformat(),
            rows=self.rows_written,
            cycles=len(self.cycles),
        )
        self.writer.check()

    def abandon(self) -> None:
        """Write nothing more, as if the process had been killed (drills and tests)."""
        self._abandoned = True
        self.writer.stop()

    def close(self) -> None:
        """Release files; never raises (a full disk was already reported by the run)."""
        if not self._abandoned:
            with contextlib.suppress(OSError):
                self._stage_unstaged()
        with contextlib.suppress(OSError):
            self._write_event_lines(flush=False)  # as a killed process's file buffer
        with contextlib.suppress(OSError):
            self._files.close()
        self._events_path = None


def _touched(path: Path) -> Path:
    """``path``, created empty if it is not there."""
    with open(path, "a", encoding="utf-8"):
        pass
    return path


def _write_cycles(root: Path, rows: list[dict[str, Any]]) -> None:
    # CYCLE_COLUMNS first, then any further column the rows carry (an import's
    # source_cycle), in the order they first appear
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in CYCLE_COLUMNS]
    names = [*CYCLE_COLUMNS, *extra]
    cols = {c: [r.get(c) for r in rows] for c in names}
    table = pa.table(cols) if rows else pa.table({c: [] for c in CYCLE_COLUMNS})
    tmp = root / "cycles.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, root / "cycles.parquet")
    lines = [",".join(names)]
    for r in rows:
        lines.append(",".join(csv_cell(r.get(c)) for c in names))
    atomic_write_bytes(root / "cycles.csv", ("\n".join(lines) + "\n").encode(), False)


def wall_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat()
