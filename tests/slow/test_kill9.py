"""kill -9 of a real orchestrator process while a simulated MACCOR (its own process, on
a fast real clock) keeps cycling; ``labrig resume`` must re-attach and finish with every
record stored exactly once."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LABRIG = [sys.executable, "-m", "labrig.orchestrator.cli"]

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
    proc = subprocess.Popen(
        [*LABRIG, "sim", "serve", "maccor", "--port", "0", "--speed", "4000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        yield address
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*LABRIG, *args, "-q", "--poll", "0.02"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _event_count(out: Path) -> int:
    runs = list(out.iterdir()) if out.exists() else []
    if len(runs) != 1 or not (runs[0] / "events.jsonl").exists():
        return 0
    return (runs[0] / "events.jsonl").read_bytes().count(b"\n")


def _wait_for_events(out: Path, *, more_than: int, proc: subprocess.Popen[bytes]) -> int:
    """Wait (up to a minute) until the run directory holds more events than before."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and proc.poll() is None:
        n = _event_count(out)
        if n > more_than:
            return n
        time.sleep(0.05)
    return _event_count(out)


def test_kill_minus_nine_then_resume(tester: str, tmp_path: Path) -> None:
    (tmp_path / "drill.yaml").write_text(PROTOCOL)
    (tmp_path / "station.yaml").write_text(
        "name: lab\n"
        f"instruments:\n  cycler: {{driver: maccor, address: '{tester}', channels: 8}}\n"
        "positions:\n  - {name: A1, cycler: cycler/0}\n"
    )
    out = tmp_path / "runs"
    rng = random.Random(7)
    proc = _start(["run", str(tmp_path / "drill.yaml"), "--station",
                   str(tmp_path / "station.yaml"), "--out", str(out)])  # fmt: skip
    kills = 0
    seen = 0  # events the run directory held at the last kill
    for _ in range(5):
        # kill only once this process has made progress of its own (a busy machine
        # can take seconds to start one), then at a seeded moment after that
        seen = _wait_for_events(out, more_than=seen, proc=proc)
        if proc.poll() is not None:
            break
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        seen = _event_count(out)
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
    events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # a resume killed before it recorded anything leaves no event of its own
    assert 1 <= sum(e["kind"] == "run_resumed" for e in events) <= kills
    shutil.rmtree(root)
