"""Records read back from an instrument after damage are put on the run's clock: each
block's offset from a row the run stored, or from the journal's start of its block, or
(neither known) carried on from the block before."""

from __future__ import annotations

import numpy as np

from labrig.drivers.capabilities import SEQ_BLOCK, RecordBatch
from labrig.orchestrator.run.damage import _on_run_clock


def _batch(seq: list[int], time_s: list[float]) -> RecordBatch:
    n = len(seq)
    z = np.zeros(n)
    return RecordBatch(np.array(seq, dtype=np.int64), np.array(time_s), np.zeros(n, np.int64),
                       z, z, z, z)  # fmt: skip


B1, B2, B3 = SEQ_BLOCK, 2 * SEQ_BLOCK, 3 * SEQ_BLOCK


def test_each_block_takes_its_offset_from_what_dates_it() -> None:
    # the instrument's times: block 1 from 0, block 2 chained on at 20, block 3 at 40
    batch = _batch([B1 + 1, B1 + 2, B2 + 1, B2 + 2, B3 + 1, B3 + 2],
                   [0.0, 10.0, 20.0, 30.0, 40.0, 50.0])  # fmt: skip
    # the run stored block 1's second row at run time 105 (its block began at 95)
    stored = (np.array([B1 + 2], dtype=np.int64), np.array([105.0]))
    got = _on_run_clock(batch, stored, None)
    # block 2 and 3: nothing dates them, they follow block 1 as the instrument chained them
    assert got.tolist() == [95.0, 105.0, 115.0, 125.0, 135.0, 145.0]
    # the journal's block (after record B2 + 2) began at run time 500
    got = _on_run_clock(batch, stored, (B2 + 2, 500.0))
    assert got.tolist() == [95.0, 105.0, 115.0, 125.0, 500.0, 510.0]


def test_with_nothing_stored_the_instruments_times_stand() -> None:
    batch = _batch([1, 2, 3], [3.0, 4.0, 5.0])
    empty = (np.empty(0, dtype=np.int64), np.empty(0))
    assert _on_run_clock(batch, empty, None).tolist() == [3.0, 4.0, 5.0]
    assert len(_on_run_clock(_batch([], []), empty, None)) == 0
