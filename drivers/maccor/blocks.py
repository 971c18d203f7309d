"""A block's test as the driver holds it: its chunks of records, and those as a batch.

Record numbering: MACCOR numbers the records of each test from 1. A channel's ``seq`` is
``block_id * 2**32 + record number`` (:data:`~drivers.capabilities.SEQ_BLOCK`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import SEQ_BLOCK, RecordBatch

from .procedure import CompiledProcedure
from .records import DataChunk

__all__ = ["SEQ_BLOCK", "Block", "block_batch", "end_time"]


@dataclass
class Block:
    """One block's test: ``chunks`` hold its records 1..``last_rec`` as read so far."""

    block_id: int
    proc: CompiledProcedure
    test_name: str
    time_base: float
    chunks: list[DataChunk] = field(default_factory=list)
    last_rec: int = 0
    finished: bool = False
    step_ids: npt.NDArray[np.int64] | None = None  # step number - 1 -> step id


def block_batch(blk: Block, after_seq: int) -> RecordBatch:
    """The block's records with ``seq > after_seq`` (only the chunks that hold them are
    touched: a long block is not copied again at every collection)."""
    first_rec = after_seq - blk.block_id * SEQ_BLOCK + 1  # the first record wanted
    if not blk.chunks or first_rec > blk.last_rec:
        return RecordBatch.empty()
    k = len(blk.chunks)
    while k > 0 and int(blk.chunks[k - 1].rec[-1]) >= first_rec:
        k -= 1
    tail = blk.chunks[k:]
    c = tail[0] if len(tail) == 1 else _concat_chunks(tail)
    if len(tail) > 1:
        blk.chunks[k:] = [c]  # fewer, larger chunks from now on
    start = int(np.searchsorted(c.rec, first_rec)) if int(c.rec[0]) < first_rec else 0
    if blk.step_ids is None:
        blk.step_ids = np.array([s.step_id for s in blk.proc.steps] + [-1], dtype=np.int64)
    step_ids = blk.step_ids
    idx = np.clip(c.step[start:] - 1, 0, len(step_ids) - 1)
    return RecordBatch(
        seq=blk.block_id * SEQ_BLOCK + c.rec[start:],
        time_s=c.test_time_s[start:] + blk.time_base,
        step_id=step_ids[idx],
        current_A=c.current_A[start:],
        voltage_V=c.voltage_V[start:],
        step_charge_Ah=c.step_charge_Ah[start:],
        temperature_C=c.temperature_C[start:],
    )


def _concat_chunks(chunks: list[DataChunk]) -> DataChunk:
    names = DataChunk.__slots__
    return DataChunk(*(np.concatenate([getattr(c, n) for c in chunks]) for n in names))


def end_time(blk: Block) -> float:
    if not blk.chunks:
        return 0.0
    return float(blk.chunks[-1].test_time_s[-1])
