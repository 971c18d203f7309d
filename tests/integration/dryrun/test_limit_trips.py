"""RELIABILITY: randomised over-voltage, over-current and under-voltage excursions all
reach the safe state within one record period; the instrument's own limit trips."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.events import RunState
from labrig.orchestrator.executor import Executor
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import INPROCESS_STATION
from labrig.protocols.loader import load_protocol_text
from tests.helpers import run_virtual_strict

CASES = 20


def _case(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["over-voltage", "under-voltage"])
    rate = round(rng.uniform(0.2, 2.0), 2)
    if kind == "over-voltage":
        v_max = round(rng.uniform(3.45, 3.72), 3)
        window, step = f"[2.0, {v_max}]", f"Charge at {rate}C for 10 h"
        first = ""
    else:
        v_min = round(rng.uniform(2.0, 2.15), 3)  # below the pristine cell's 2.21 V
        window, step = f"[{v_min}, 3.8]", f"Discharge at {rate}C for 10 h"
        first = "  - Charge at 0.5C until 3.68 V\n"
    text = (
        f"name: trip {kind}\n"
        "cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}\n"
        f"limits: {{voltage_V: {window}, current_abs_mA: 10}}\n"
        "defaults: {record: {every_s: 10}}\n"
        f"sequence:\n{first}  - {step}\n"
    )
    return kind, text


@pytest.mark.parametrize("seed", range(CASES))
def test_random_excursion_reaches_the_safe_state(seed: int, tmp_path: Path) -> None:
    kind, text = _case(random.Random(seed))
    proto = load_protocol_text(text, source_name=f"trip{seed}.yaml")
    execs: list[Executor] = []

    async def main() -> Any:
        req = RunRequest(
            protocol=proto, protocol_yaml=text, out_dir=tmp_path, station=INPROCESS_STATION
        )
        res = await execute_run(req, on_executor=execs.append)
        return res, await execs[0].bind.cycler.status()

    (outcome, root), status = run_virtual_strict(main())
    assert outcome.state in (RunState.failed, RunState.aborted), (kind, outcome)
    assert status.current_A == 0.0
    events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] in ("fault", "limit_trip") for e in events)
    data = pq.read_table(root / "data").to_pandas()
    lo, hi = proto.limits.voltage_V  # type: ignore[misc]
    out = data[(data.voltage_V > hi + 2e-3) | (data.voltage_V < lo - 2e-3)]
    assert out.empty, "the instrument let the voltage past its limit"
    edge = data[(data.voltage_V >= hi - 1e-3) | (data.voltage_V <= lo + 1e-3)]
    if not edge.empty:  # from reaching the limit to the last record: within one period
        assert data.time_s.iloc[-1] - edge.time_s.iloc[0] <= 10.0 + 1e-6
