"""Re-opening a run directory: what its chunks, staging files and journal hold, and
whether any of it is damaged (nothing is changed here: a damaged run stays as found)."""

from __future__ import annotations

import json
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from .staging import StagingLog, read_staging, rows_between
from .tables import SCHEMA, from_ipc_bytes, unique_after

__all__ = ["CHUNK_SUMS", "CarriesRows", "ChunkCheck", "Reopened", "StoreDamaged", "reopen"]

# data/_chunks.json: [CRC-32 of the file, rows] of every chunk, in order
CHUNK_SUMS = "_chunks.json"  # "_": not read as data by Arrow datasets


class StoreDamaged(RuntimeError):
    """A run's data files are not what was written: ``damage`` says which and how;
    ``intact_seq`` is the newest record up to which every row is intact."""

    def __init__(self, damage: list[str], intact_seq: int) -> None:
        super().__init__("; ".join(damage))
        self.damage = damage
        self.intact_seq = intact_seq


class CarriesRows(Protocol):
    """The journal as the store sees it: its commits carry the rows not yet on disk."""

    def rows(self) -> bytes | None: ...

    def set_rows(
        self, body: bytes | None, stored_seq: int, events_seq: int = 0, after: int = -1
    ) -> None: ...

    def stored_seq(self) -> int | None: ...

    def carried_after(self) -> int | None: ...


@dataclass
class Reopened:
    rows: int  # in chunks
    last_flushed: int  # newest seq in chunks
    files: StagingLog
    pending: pa.Table  # rows staged or carried, not in a chunk
    carried: pa.Table  # rows only the journal's last commit holds (to be staged again)
    damage: list[str] = field(default_factory=list)
    intact_seq: int = -1


def _chunk_sums(data_dir: Path) -> list[list[int]] | None:
    path = data_dir / CHUNK_SUMS
    if not path.exists():
        return None
    try:
        return [list(map(int, x)) for x in json.loads(path.read_text())["crc32_rows"]]
    except (ValueError, KeyError, TypeError):
        return None


def _check_chunks(parts: list[Path], meta: dict[str, Any], data_dir: Path) -> list[str]:
    """Every chunk there, numbered without a gap, and equal to its checksum."""
    damage: list[str] = []
    sums = _chunk_sums(data_dir)
    counted = (meta.get("chunks") or {}).get("count")
    expected = max(len(sums) if sums is not None else 0, int(counted or 0), len(parts))
    names = {p.name for p in parts}
    for k in range(expected):
        name = f"part-{k:05d}.parquet"
        if name not in names:
            damage.append(f"data/{name} is missing")
            continue
        if sums is not None and k < len(sums):
            crc = zlib.crc32((data_dir / name).read_bytes())
            if crc != sums[k][0]:
                damage.append(f"data/{name} is damaged (its bytes fail their checksum)")
    return damage


def _chunk_totals(parts: list[Path], meta: dict[str, Any]) -> tuple[int, int]:
    """(rows in the chunks, newest seq in them)."""
    chunks = meta.get("chunks")
    known = chunks is not None and chunks.get("count") == len(parts)
    rows, last = 0, -1
    if known and chunks is not None:
        # run.json keeps the running totals: no need to open every chunk
        rows = int(chunks["rows"])
        read = parts[-1:]  # chunks are in sequence order: the last one has the max
    else:
        read = parts
    for part in read:
        md = pq.read_metadata(part)
        if not known:
            rows += md.num_rows
        seq_col = md.schema.names.index("record_seq")
        for rg in range(md.num_row_groups):
            stats = md.row_group(rg).column(seq_col).statistics
            if stats is not None and stats.has_min_max:
                last = max(last, int(stats.max))
    return rows, last


class ChunkCheck:
    """Every chunk of ``data_dir`` against its checksum, on a thread of its own while the
    journal and the staging log are checked (reading files and CRC-32 over them let go of
    the interpreter); :meth:`damage` waits for it. Without chunks (none to read, though
    some may be missing) it is done at once."""

    def __init__(self, data_dir: Path, meta: dict[str, Any]) -> None:
        self.parts = sorted(data_dir.glob("part-*.parquet"))
        self._found: list[str] = []
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if not self.parts:
            self._check(data_dir, meta)
            return
        self._thread = threading.Thread(
            target=self._check, args=(data_dir, meta), name="chunk-check", daemon=True
        )
        self._thread.start()

    def _check(self, data_dir: Path, meta: dict[str, Any]) -> None:
        try:
            self._found = _check_chunks(self.parts, meta, data_dir)
        except BaseException as exc:  # raised where the result is asked for
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def damage(self) -> list[str]:
        self.wait()
        if self._error is not None:
            raise self._error
        return self._found


def reopen(
    data_dir: Path,
    meta: dict[str, Any],
    journal: CarriesRows | None,
    *,
    durable: bool,
    check: bool = False,
    chunks: ChunkCheck | None = None,
) -> Reopened:
    """What a run's data directory (and the journal's last commit) holds. ``check``:
    damage too (``chunks``: the chunks' check, already started; waited for here)."""
    if check and chunks is None:
        chunks = ChunkCheck(data_dir, meta)
    try:
        parts = chunks.parts if chunks is not None else sorted(data_dir.glob("part-*.parquet"))
        damage: list[str] = []
        try:
            rows, last = _chunk_totals(parts, meta)
        except (OSError, pa.ArrowInvalid) as exc:
            if not check:
                raise
            damage.append(f"a chunk in data/ cannot be read ({exc})")
            rows, last = 0, -1
        paths = sorted(data_dir.glob("staging-*.arrow"))
        staged = read_staging(paths)
    finally:
        if chunks is not None:
            chunks.wait()
    if chunks is not None:
        damage[:0] = chunks.damage()
    tables, reach, gaps = staged.linked(last)
    if check:
        damage += [str(d) for d in staged.damaged]
        if gaps:
            more = f" (and {len(gaps) - 1} more batches after the gap)" if len(gaps) > 1 else ""
            damage.append(f"staging log: {gaps[0]}{more}")
    files = StagingLog(data_dir, durable=durable)
    files.chunk_index = len(parts)
    files.chunk_sums = _chunk_sums(data_dir) or []
    files.files = paths
    serials = [int(p.stem.rsplit("-", 1)[-1]) for p in paths if p.stem[-1:].isdigit()]
    files.serial = max(serials, default=-1) + 1  # never reuse a name
    files.last_seq = reach
    carried = SCHEMA.empty_table()
    body = journal.rows() if journal is not None else None
    if body is not None:
        carried = unique_after(from_ipc_bytes(body), reach)
        if carried.num_rows:
            tables.append(carried)
    table = unique_after(pa.concat_tables(tables), last) if tables else SCHEMA.empty_table()
    held = max(last, int(table.column("record_seq")[-1].as_py()) if table.num_rows else -1)
    stored = journal.stored_seq() if journal is not None else None
    after = journal.carried_after() if journal is not None else None
    if check and after is not None and reach < after:
        torn = ", ".join(p.name for p in staged.torn) or "none left"
        damage.append(
            f"{rows_between(reach, after)} are missing: they were on disk when the journal last "
            f"committed (staging files cut off or deleted: {torn})"
        )
    elif check and stored is not None and held < stored:
        torn = ", ".join(p.name for p in staged.torn) or "none left"
        damage.append(
            f"{rows_between(held, stored)} are missing: the journal's last commit says the run "
            f"held them (staging files cut off or deleted: {torn})"
        )
    found = Reopened(rows, last, files, table, carried, damage)
    found.intact_seq = min(reach, held) if damage else held
    return found
