"""kill -9 of a real orchestrator process while a simulated MACCOR (its own process, on
a fast real clock) keeps cycling; ``labrig resume`` must re-attach and finish with every
record stored exactly once."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.procs import (
    event_count,
    events,
    kill,
    maccor_station,
    run_dir,
    simulator,
    start,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PROTOCOL = """\
name: kill drill
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - label: aging
    repeat: 8
    steps: [Charge at 1C until 3.68 V, Rest for 10 min, Discharge at 1C until 2.28 V]
    checkpoints:
      - every: 4
        steps: [Charge at 0.25C until 3.68 V, Discharge at 0.25C until 2.28 V]
"""


@pytest.fixture
def tester() -> Iterator[str]:
    with simulator("maccor", speed=4000) as address:
        yield address


def _start(args: list[str]) -> subprocess.Popen[str]:
    return start([*args, "-q", "--poll", "0.02"])


def _more_events_than(out: Path, n: int) -> Callable[[], bool]:
    return lambda: event_count(run_dir(out)) > n


def test_kill_minus_nine_then_resume(tester: str, tmp_path: Path) -> None:
    (tmp_path / "drill.yaml").write_text(PROTOCOL)
    station = maccor_station(tmp_path, tester)
    out = tmp_path / "runs"
    rng = random.Random(7)
    proc = _start(["run", str(tmp_path / "drill.yaml"), "--station", str(station),
                   "--out", str(out)])  # fmt: skip
    kills = 0
    seen = 0  # events the run directory held at the last kill
    for _ in range(5):
        # kill only once this process has made progress of its own (a busy machine
        # can take seconds to start one), then at a seeded moment after that
        wait_until(_more_events_than(out, seen), proc=proc)
        seen = event_count(run_dir(out))
        if proc.poll() is not None:
            break
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break
        kill(proc)
        kills += 1
        seen = event_count(run_dir(out))
        (root,) = list(out.iterdir())
        proc = _start(["resume", str(root)])
    assert proc.wait(180) == 0
    (root,) = list(out.iterdir())
    assert kills >= 2
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "finished"
    assert 1 <= len(meta.get("resumed", [])) <= kills
    data = pq.read_table(root / "data").to_pandas()
    seq = data.record_seq.to_numpy()
    assert len(np.unique(seq)) == len(seq), "a record was stored twice"
    # MACCOR records are numbered per test (block): every block's numbers are 1..n
    block, rec = seq >> 32, seq & 0xFFFFFFFF
    for b in np.unique(block):
        r = np.sort(rec[block == b])
        assert r[0] == 1 and np.array_equal(r, np.arange(1, len(r) + 1)), f"gap in block {b}"
    cycles = pd.read_csv(root / "cycles.csv")
    assert list(cycles.cycle) == list(range(1, 11))  # 8 aging + 2 check-ups
    assert (cycles.coulombic_efficiency_pct.iloc[1:] > 95).all()
    journal = events(root)
    assert [e["seq"] for e in journal] == list(range(1, len(journal) + 1))
    # a resume killed before it recorded anything leaves no event of its own
    assert 1 <= sum(e["kind"] == "run_resumed" for e in journal) <= kills
    shutil.rmtree(root)
