"""Kill the orchestrator at seeded random moments; the resumed run must equal an
uninterrupted one: same records (none lost, none twice), same cycles, every event once."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.drills import run_with_kills
from labrig.orchestrator.events import RunState
from labrig.protocols.loader import load_protocol_text
from tests.helpers import run_virtual_strict

PROTOCOL = """
name: crash drill
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - label: formation
    repeat: 1
    steps: [Charge at 0.2C until 3.68 V, Rest for 10 min, Discharge at 0.2C until 2.28 V]
  - EIS from 100 kHz to 0.1 Hz, 5 per decade, 10 mV amplitude at OCV
  - label: aging
    repeat: 12
    steps: [Charge at 1C until 3.68 V, Discharge at 1C until 2.28 V]
    checkpoints:
      - every: 5
        steps: [Charge at 0.2C until 3.68 V, Discharge at 0.2C until 2.28 V]
      - at: [12]
        counts_as_cycle: false
        steps: ["EIS from 100 kHz to 0.1 Hz, 5 per decade, 10 mV amplitude at OCV"]
"""


def _load(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[dict], list[str]]:
    data = pq.read_table(root / "data").to_pandas().sort_values("record_seq")
    cycles = pd.read_csv(root / "cycles.csv")
    events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
    eis = sorted(p.name for p in (root / "eis").iterdir())
    return data.reset_index(drop=True), cycles, events, eis


@pytest.fixture(scope="module", params=[1, 4], ids=["block-per-cycle", "4-cycle-blocks"])
def reference(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    proto = load_protocol_text(PROTOCOL, source_name="drill.yaml")
    out = tmp_path_factory.mktemp("ref")
    res = run_virtual_strict(run_with_kills(proto, out, [], batch_iterations=request.param))
    assert res.outcome.state == RunState.finished, res.outcome.reason
    return (*_load(res.root), request.param)


@pytest.mark.parametrize(
    ("seed", "stage_every_s"),
    # 3600 s of real time: rows are staged only when the journal records a position,
    # so every kill loses the rows since then and they must come back from the channel
    [(1, 0.0), (2, 0.0), (3, 3600.0)],
    ids=["seed1-each-append", "seed2-each-append", "seed3-grouped-staging"],
)
def test_twenty_kills_resume_to_the_same_result(
    seed: int, stage_every_s: float, tmp_path: Path, reference: tuple[Any, ...]
) -> None:
    ref_data, ref_cycles, ref_events, ref_eis, batch = reference
    proto = load_protocol_text(PROTOCOL, source_name="drill.yaml")
    end = float(ref_data.time_s.max())
    rng = random.Random(seed)
    kills = sorted(rng.uniform(0, end) for _ in range(20))
    res = run_virtual_strict(
        run_with_kills(proto, tmp_path, kills, batch_iterations=batch, stage_every_s=stage_every_s)
    )
    assert res.outcome.state == RunState.finished, res.outcome.reason
    assert res.kills == 20
    data, cycles, events, eis = _load(res.root)
    # no record lost, none twice, and each exactly as the uninterrupted run recorded it
    assert data.record_seq.is_unique
    assert len(data) == len(ref_data)
    for col in (
        "record_seq",
        "cycle",
        "step",
        "time_s",
        "current_A",
        "voltage_V",
        "charge_capacity_Ah",
        "discharge_capacity_Ah",
    ):
        np.testing.assert_allclose(
            data[col].to_numpy(float),
            ref_data[col].to_numpy(float),
            rtol=1e-9,
            atol=1e-12,
            err_msg=col,
        )
    assert (data.step_type.astype(str).values == ref_data.step_type.astype(str).values).all()
    # cycles too, each ending at its own last record as in the uninterrupted run
    pd.testing.assert_frame_equal(cycles, ref_cycles, check_exact=False, rtol=1e-9)
    # every event once, in order; the same story as the uninterrupted run
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    story = [
        (e["kind"], e["data"].get("step_id"), e["data"].get("cycle"))
        for e in events
        if e["kind"] != "run_resumed"
    ]
    ref_story = [(e["kind"], e["data"].get("step_id"), e["data"].get("cycle")) for e in ref_events]
    assert story == ref_story
    # dated as the uninterrupted run dated them, and in time order across the restarts
    times = [e["run_time_s"] for e in events if e["kind"] != "run_resumed"]
    np.testing.assert_allclose(times, [e["run_time_s"] for e in ref_events], rtol=1e-9)
    every = [e["run_time_s"] for e in events]
    assert every == sorted(every)
    assert sum(e["kind"] == "run_resumed" for e in events) == 20
    assert eis == ref_eis and len(eis) == 2
