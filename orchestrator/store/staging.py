"""The staging log: rows not yet in a Parquet chunk, appended as Arrow IPC streams.

Every batch carries, in its metadata, a CRC-32 over its values and the sequence number
of the last row staged before it (``prev``). Reading the log back checks both: a batch
whose values do not match its CRC, or a log whose batches do not link up from the last
chunk to the newest row, is damage (:class:`StagingDamaged`), not a torn tail. A torn
tail (the last batch cut off by a killed writer) is expected after a crash; whether rows
were lost with it is decided against the journal, which records what was durable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pyarrow as pa

from labrig.drivers.capabilities import seq_text

from .tables import SCHEMA, checked_batch, values_crc

__all__ = [
    "STAGING_BATCHES",
    "StagedRows",
    "StagingDamaged",
    "StagingLog",
    "read_staging",
    "rows_between",
]

# a staging file holding this many batches is rewritten as one (restarts stay quick)
STAGING_BATCHES = 64


class StagingDamaged(RuntimeError):
    """A staging file holds bytes that are not what was written."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path.name}: {what}")
        self.path = path
        self.what = what


@dataclass
class _Batch:
    table: pa.Table
    first: int
    last: int
    prev: int | None  # None: written before batches carried links


@dataclass
class StagedRows:
    """What a run's staging files hold: their rows, linked from ``after`` onwards."""

    batches: list[_Batch] = field(default_factory=list)
    torn: list[Path] = field(default_factory=list)  # files whose last batch was cut off
    damaged: list[StagingDamaged] = field(default_factory=list)

    def linked(self, after: int) -> tuple[list[pa.Table], int, list[str]]:
        """The batches that continue ``after`` without a gap, the last seq they reach, and
        the gaps found (a batch that links to nothing before it)."""
        tables: list[pa.Table] = []
        reach = after
        gaps: list[str] = []
        for b in sorted(self.batches, key=lambda b: (b.first, -b.last)):
            if b.last <= reach:
                continue  # a copy (a compaction cut off by the crash), or already chunked
            if b.prev is not None and b.prev > reach:
                gaps.append(f"{rows_between(reach, b.prev)} missing before {seq_text(b.first)}")
                continue
            tables.append(b.table)
            reach = b.last
        return tables, reach, gaps


def rows_between(after: int, upto: int) -> str:
    """The rows after seq ``after`` up to seq ``upto``, as a person reads them."""
    if after < 0:
        return f"rows up to {seq_text(upto)}"
    return f"rows after {seq_text(after)} up to {seq_text(upto)}"


def _read_file(path: Path, out: StagedRows) -> None:
    good_end = 0  # where the last batch read whole ends
    try:
        with pa.OSFile(str(path), "rb") as f:
            reader = pa.ipc.open_stream(f)
            while True:
                try:
                    batch, meta = reader.read_next_batch_with_custom_metadata()
                except StopIteration:
                    return
                good_end = f.tell()
                _check(path, batch, meta, out)
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        size = path.stat().st_size if path.exists() else 0
        if size and not out.batches and "schema" in str(exc).lower():
            out.damaged.append(StagingDamaged(path, f"unreadable header ({exc})"))
        elif size and good_end and _batches_after(path, good_end):
            # not a write cut short at the end: whole batches follow the unreadable one
            out.damaged.append(
                StagingDamaged(path, f"unreadable batch at byte {good_end}, more follow ({exc})")
            )
        else:
            out.torn.append(path)


def _batches_after(path: Path, start: int) -> bool:
    """Whether a whole record batch message starts somewhere after byte ``start`` (a torn
    tail is one message cut short: nothing whole can follow it)."""
    data = path.read_bytes()
    buf = pa.py_buffer(data)
    i = data.find(_MESSAGE_MARK, start + 1)
    while i >= 0:
        try:
            if pa.ipc.read_message(buf.slice(i)).type == "record batch":
                return True
        except (pa.ArrowInvalid, OSError, ValueError, EOFError):
            pass
        i = data.find(_MESSAGE_MARK, i + 1)
    return False


_MESSAGE_MARK = b"\xff\xff\xff\xff"  # the IPC stream's continuation marker


def _check(path: Path, batch: pa.RecordBatch, meta: Any, out: StagedRows) -> None:
    if batch.num_rows == 0:
        return
    seq = batch.column("record_seq")
    first, last = int(seq[0].as_py()), int(seq[-1].as_py())
    md = {k.decode(): v.decode() for k, v in meta.items()} if meta is not None else {}
    prev: int | None = None
    if "crc" in md:
        if int(md["crc"], 16) != values_crc(batch):
            raise_damage = StagingDamaged(
                path, f"rows from {seq_text(first)} to {seq_text(last)} fail their checksum"
            )
            out.damaged.append(raise_damage)
            return
        prev = int(md["prev"])
    out.batches.append(_Batch(pa.Table.from_batches([batch]), first, last, prev))


def read_staging(paths: list[Path]) -> StagedRows:
    """Every batch of the staging files, checked; torn tails and damage noted."""
    out = StagedRows()
    for path in paths:
        _read_file(path, out)
    return out


class StagingLog:
    """The open staging files of one run (used by one writer at a time, in order)."""

    def __init__(self, data_dir: Path, *, durable: bool) -> None:
        self.data_dir = data_dir
        self.durable = durable
        self.chunk_index = 0
        self.files: list[Path] = []
        self.chunk_sums: list[list[int]] = []  # [CRC-32, rows] of each chunk written
        self.serial = 0  # numbers the staging files of the current chunk
        self.last_seq = -1  # the newest row staged (or chunked): the next batch's prev
        self._open: tuple[Any, Any] | None = None
        self._path: Path | None = None
        self._batches: list[pa.RecordBatch] = []  # what the open file holds
        self._open_prev = -1

    def append(self, rows: pa.Table | Mapping[str, npt.NDArray[Any]]) -> None:
        """Stage ``rows`` (a table, or ``append_records``' arrays) at the log's end."""
        batches = _checked(rows)
        if not batches:
            return
        if self._open is None:
            self._start()
        assert self._open is not None
        sink, writer = self._open
        prev = _write_linked(writer, batches, self.last_seq)
        sink.flush()  # appended to the file (and synced when durable)
        self._batches.extend(batch for batch, _crc in batches)
        self.last_seq = prev
        if len(self._batches) >= STAGING_BATCHES:
            self._compact()

    def _start(self) -> None:
        self._path = self._next_path()
        sink = _AppendOnFlush(self._path, durable=self.durable)
        self._open = (sink, pa.ipc.new_stream(sink, SCHEMA))
        self.files.append(self._path)
        self._batches = []
        self._open_prev = self.last_seq  # what the file's first batch follows

    def _next_path(self) -> Path:
        n = self.serial
        self.serial += 1
        return self.data_dir / f"staging-{self.chunk_index:05d}-{n:03d}.arrow"

    def _compact(self) -> None:
        """Rewrite the open file's many small batches as one batch in a file of its own
        (complete before the small ones go), so a restart reads a few large batches."""
        if self._open is None or self._path is None:
            return
        table = pa.Table.from_batches(self._batches).combine_chunks()
        first_prev = self._open_prev
        self._close_open()
        small = self._path
        merged = self._next_path()
        with pa.OSFile(str(merged), "wb") as out:
            with pa.ipc.new_stream(out, SCHEMA) as w:
                _write_linked(w, _checked(table), first_prev)
            out.flush()
            if self.durable:
                os.fsync(out.fileno())
        self.files[self.files.index(small)] = merged
        small.unlink(missing_ok=True)
        self._batches = []

    def _close_open(self) -> None:
        if self._open is not None:
            sink, writer = self._open
            self._open = None
            try:
                writer.close()
            finally:
                sink.close()

    def chunk_written(self, last_seq: int) -> None:
        """The rows staged so far are in chunk ``chunk_index``: drop the staging files."""
        self._close_open()
        for path in self.files:
            path.unlink(missing_ok=True)
        self.files = []
        self.serial = 0
        self.chunk_index += 1
        self.last_seq = max(self.last_seq, last_seq)
        self._batches = []

    def close(self) -> None:
        self._close_open()


class _AppendOnFlush:
    """The open staging file as the IPC writer sees it, without a file descriptor held
    between writes (one per run is one per channel on a station of thousands): what is
    written collects in memory and is appended to the file, in one write, at each
    flush (then synced when durable). A batch reaches the file whole or not at all."""

    def __init__(self, path: Path, *, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self.closed = False
        self._buf = bytearray()
        self._size = 0
        with open(path, "wb"):
            pass  # the file exists from the start, empty, as a new log does

    def write(self, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        self._buf += data
        self._size += n
        return n

    def tell(self) -> int:
        return self._size

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        if not self._buf:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)  # no Python file object: half
        try:  # the cost of each small append
            view = memoryview(bytes(self._buf))
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._buf.clear()

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True


def _checked(rows: pa.Table | Mapping[str, npt.NDArray[Any]]) -> list[tuple[pa.RecordBatch, int]]:
    """The non-empty batches of ``rows``, each with its CRC."""
    if isinstance(rows, pa.Table):
        return [(b, values_crc(b)) for b in rows.to_batches() if b.num_rows]
    batch, crc = checked_batch(rows)
    return [(batch, crc)] if batch.num_rows else []


def _write_linked(writer: Any, batches: list[tuple[pa.RecordBatch, int]], prev: int) -> int:
    """Write each batch with its CRC and the seq it follows; returns the last seq written."""
    for batch, crc in batches:
        writer.write_batch(batch, custom_metadata={"crc": f"{crc:08x}", "prev": str(prev)})
        prev = int(batch.column("record_seq")[-1].as_py())
    return prev
