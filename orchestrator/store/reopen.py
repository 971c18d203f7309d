"""Re-opening a run directory: what its chunks, staging files and journal hold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from .staging import StagingLog, read_staging
from .tables import SCHEMA, from_ipc_bytes, unique_after

__all__ = ["CarriesRows", "Reopened", "reopen"]


class CarriesRows(Protocol):
    """The journal as the store sees it: its commits carry the rows not yet on disk."""

    def rows(self) -> bytes | None: ...

    def set_rows(self, body: bytes | None, stored_seq: int) -> None: ...


@dataclass
class Reopened:
    rows: int  # in chunks
    last_flushed: int  # newest seq in chunks
    files: StagingLog
    pending: pa.Table  # rows staged or carried, not in a chunk


def _chunk_totals(data_dir: Path, meta: dict[str, Any]) -> tuple[int, int, int]:
    """(chunks, rows in them, newest seq in them)."""
    parts = sorted(data_dir.glob("part-*.parquet"))
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
    return len(parts), rows, last


def reopen(
    data_dir: Path, meta: dict[str, Any], journal: CarriesRows | None, *, durable: bool
) -> Reopened:
    """What a run's data directory (and the journal's last commit) holds."""
    count, rows, last = _chunk_totals(data_dir, meta)
    for tmp in data_dir.glob("*.tmp"):
        tmp.unlink()  # a chunk that was being written when the process died
    paths = sorted(data_dir.glob("staging-*.arrow"))
    staged = read_staging(paths)
    tables, reach, _gaps = staged.linked(last)
    files = StagingLog(data_dir, durable=durable)
    files.chunk_index = count
    files.files = paths
    serials = [int(p.stem.rsplit("-", 1)[-1]) for p in paths if p.stem[-1:].isdigit()]
    files.serial = max(serials, default=-1) + 1  # never reuse a name
    files.last_seq = reach
    carried = journal.rows() if journal is not None else None
    if carried is not None:
        extra = unique_after(from_ipc_bytes(carried), reach)
        if extra.num_rows:
            # rows the journal's last commit carried: staged again so the log links up
            files.append(extra)
            tables.append(extra)
    table = unique_after(pa.concat_tables(tables), last) if tables else SCHEMA.empty_table()
    return Reopened(rows, last, files, table)
