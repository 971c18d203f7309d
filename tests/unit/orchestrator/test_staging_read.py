"""Reading a staging file back: a write cut short at its end is a torn tail (the rows
come again from the instrument); anything unreadable with whole batches after it is damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labrig.orchestrator.store.staging import StagingLog, read_staging
from labrig.orchestrator.store.tables import to_table
from labrig.protocols.rundir import DATA_COLUMNS


def rows(first: int, n: int) -> dict[str, np.ndarray]:
    seq = np.arange(first, first + n, dtype=np.int64)
    cols: dict[str, np.ndarray] = {c: seq.astype(float) for c in DATA_COLUMNS}
    cols.update(
        cycle=np.ones(n, dtype=np.int32),
        step=np.ones(n, dtype=np.int32),
        step_type=np.array(["charge"] * n, dtype=object),
        record_seq=seq,
    )
    return cols


def staged(tmp_path: Path, batches: int = 5) -> tuple[Path, list[int]]:
    log = StagingLog(tmp_path, durable=False)
    ends = []
    for k in range(batches):
        log.append(to_table(rows(1 + 3 * k, 3)))
        assert log._open is not None
        log._open[0].flush()
        ends.append(log._path.stat().st_size if log._path else 0)
    log._close_open()
    assert len(log.files) == 1
    return log.files[0], ends


def test_an_intact_file_reads_whole(tmp_path: Path) -> None:
    path, _ = staged(tmp_path)
    out = read_staging([path])
    assert not out.damaged and not out.torn
    assert sum(b.table.num_rows for b in out.batches) == 15


def test_a_file_cut_inside_its_last_batch_is_a_torn_tail(tmp_path: Path) -> None:
    path, ends = staged(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: ends[3] + (ends[4] - ends[3]) // 2])
    out = read_staging([path])
    assert out.torn == [path] and not out.damaged
    assert sum(b.table.num_rows for b in out.batches) == 12


def test_a_batch_header_flipped_mid_file_is_damage(tmp_path: Path) -> None:
    path, ends = staged(tmp_path)
    data = bytearray(path.read_bytes())
    # the third batch's message: its metadata (flatbuffer) starts 8 bytes in
    for k in range(8, 24):
        data[ends[1] + k] ^= 0xFF
    path.write_bytes(bytes(data))
    out = read_staging([path])
    assert not out.torn
    assert out.damaged and "more follow" in out.damaged[0].what
