"""End-to-end dry runs on the built-in simulated station (virtual clock)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.events import RunState
from labrig.orchestrator.executor import Executor, RunOptions
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import INPROCESS_STATION
from labrig.orchestrator.store import CYCLE_COLUMNS, DATA_COLUMNS
from labrig.protocols.loader import dump_protocol_yaml, load_protocol, load_protocol_text
from tests.helpers import run_virtual_strict

ISSUE_CYCLE_COLUMNS = [
    "cycle",
    "charge_c_rate",
    "discharge_c_rate",
    "charge_capacity_mAh",
    "discharge_capacity_mAh",
    "charge_capacity_mAh_g",
    "discharge_capacity_mAh_g",
    "coulombic_efficiency_pct",
    "mean_discharge_voltage_V",
    "discharge_energy_mWh",
]


def _run(protocol: Any, tmp: Path, **kw: Any) -> tuple[Any, Path]:
    req = RunRequest(
        protocol=protocol, protocol_yaml=dump_protocol_yaml(protocol), out_dir=tmp, **kw
    )
    return run_virtual_strict(execute_run(req))


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Any]:
    proto = load_protocol("rate_test")
    outcome, root = _run(proto, tmp_path_factory.mktemp("rate"))
    return outcome, root, proto


def test_rate_test_runs_to_the_end_with_the_right_cycles(rate_run: Any) -> None:
    outcome, root, _proto = rate_run
    assert outcome.state == RunState.finished, outcome.reason
    cycles = pd.read_csv(root / "cycles.csv")
    assert list(cycles.columns[: len(ISSUE_CYCLE_COLUMNS)]) == ISSUE_CYCLE_COLUMNS
    assert list(cycles["cycle"]) == list(range(1, 20))
    counts = cycles.groupby("discharge_c_rate")["cycle"].count().to_dict()
    assert counts == {0.1: 3, 0.25: 3, 0.5: 3, 1.0: 5, 2.0: 5}
    # higher rate, less capacity; first-cycle efficiency in the lab's range
    means = cycles.groupby("discharge_c_rate")["discharge_capacity_mAh_g"].mean()
    assert list(means.sort_index().values) == sorted(means.values, reverse=True)
    assert 80 <= cycles["coulombic_efficiency_pct"].iloc[0] <= 88


def test_currents_equal_c_rate_times_nominal(rate_run: Any) -> None:
    _outcome, root, proto = rate_run
    one_c = proto.cell.one_c_A()
    data = pq.read_table(root / "data").to_pandas()
    cycles = pd.read_csv(root / "cycles.csv").set_index("cycle")
    for kind, sign, col in (("charge", 1, "charge_c_rate"), ("discharge", -1, "discharge_c_rate")):
        rows = data[data.step_type == kind]
        med = rows.groupby("cycle")["current_A"].median()
        expected = sign * cycles.loc[med.index, col] * one_c
        np.testing.assert_allclose(med.values, expected.values, rtol=2e-3)


def test_run_directory_layout_and_columns(rate_run: Any) -> None:
    _outcome, root, _proto = rate_run
    for name in (
        "run.json",
        "protocol.yaml",
        "journal.sqlite",
        "cycles.parquet",
        "cycles.csv",
        "events.jsonl",
    ):
        assert (root / name).is_file(), name
    table = pq.read_table(root / "data")
    assert table.column_names == list(DATA_COLUMNS)
    assert list(pq.read_table(root / "cycles.parquet").column_names) == list(CYCLE_COLUMNS)
    seq = table.column("record_seq").to_numpy()
    assert len(np.unique(seq)) == len(seq)
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "finished" and meta["simulated"] is True
    # the protocol as run loads back to the same protocol
    again = load_protocol_text((root / "protocol.yaml").read_text(), source_name="protocol.yaml")
    assert again == rate_run[2]


def test_stored_capacities_conserve_charge(rate_run: Any) -> None:
    """Integrated current equals the capacity columns (trapezoid on 10 s records)."""
    _outcome, root, _proto = rate_run
    data = pq.read_table(root / "data").to_pandas()
    for (_cycle, _step), g in data.groupby(["cycle", "step"]):
        if len(g) < 3 or g.step_type.iloc[0] not in ("charge", "discharge"):
            continue
        q_int = np.trapezoid(g.current_A.values, g.time_s.values) / 3600.0
        col = "charge_capacity_Ah" if q_int > 0 else "discharge_capacity_Ah"
        q_col = g[col].iloc[-1] - g[col].iloc[0]
        assert abs(q_int) == pytest.approx(q_col, rel=5e-3)


def test_checkpoints_fire_at_the_right_cycles(tmp_path: Path) -> None:
    text = """
name: checkpoints
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
sequence:
  - Charge at 0.1C until 3.68 V
  - Discharge at 0.1C until 2.28 V
  - label: aging
    repeat: 7
    steps: [Charge at 2C until 3.68 V, Discharge at 2C until 2.28 V]
    checkpoints:
      - every: 3
        label: check-up
        steps: [Charge at 0.5C until 3.68 V, Discharge at 0.5C until 2.28 V]
      - at: [1, 7]
        counts_as_cycle: false
        steps: ["EIS from 100 kHz to 1 Hz, 5 per decade, 10 mV amplitude at OCV"]
"""
    proto = load_protocol_text(text, source_name="cp.yaml")
    outcome, root = _run(proto, tmp_path)
    assert outcome.state == RunState.finished, outcome.reason
    cycles = pd.read_csv(root / "cycles.csv")
    # 1 formation + 7 aging + check-ups after aging iterations 3 and 6
    assert len(cycles) == 10
    rates = list(cycles["discharge_c_rate"])
    assert rates == [0.1, 2, 2, 2, 0.5, 2, 2, 2, 0.5, 2]
    assert list(cycles["block"][[4, 8]]) == ["check-up", "check-up"]
    eis = sorted(p.name for p in (root / "eis").iterdir())
    # EIS after aging iteration 1 (cycle 2) and 7 (cycle 10)
    assert eis == ["cycle_00002.parquet", "cycle_00010.parquet"]
    spec = pq.read_table(root / "eis" / eis[0]).to_pandas()
    assert list(spec.columns) == ["frequency_Hz", "z_real_ohm", "z_imag_ohm"]
    assert len(spec) == 26 and spec.z_real_ohm.min() > 0  # 5 decades x 5 + 1


def test_loop_until_capacity_fraction_stops_the_loop(tmp_path: Path) -> None:
    text = """
name: until
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
sequence:
  - label: fast
    until: [discharge capacity < 99.5% of cycle 2]
    max_repeat: 50
    steps: [Charge at 0.5C until 3.68 V, Discharge at 0.5C until 2.28 V]
"""
    outcome, root = _run(load_protocol_text(text, source_name="u.yaml"), tmp_path)
    assert outcome.state == RunState.finished
    cycles = pd.read_csv(root / "cycles.csv")
    ref = cycles.loc[cycles.cycle == 2, "discharge_capacity_mAh"].iloc[0]
    last = cycles["discharge_capacity_mAh"].iloc[-1]
    assert last < 0.995 * ref
    assert (cycles["discharge_capacity_mAh"].iloc[2:-1] >= 0.995 * ref).all()
    assert len(cycles) < 50


def test_limit_violation_ends_in_safe_state_and_aborts(tmp_path: Path) -> None:
    # A charge by time only runs the cell past the envelope: it must trip.
    text = """
name: trip
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.6], current_abs_mA: 10}
sequence:
  - Charge at 0.5C for 4 h
  - Discharge at 0.5C until 2.28 V
"""
    execs: list[Executor] = []
    req = RunRequest(
        protocol=load_protocol_text(text, source_name="t.yaml"),
        protocol_yaml=text,
        out_dir=tmp_path,
        station=INPROCESS_STATION,  # its channel can still be asked after the run
        options=RunOptions(poll_s=10.0),
    )
    outcome, root = run_virtual_strict(execute_run(req, on_executor=execs.append))
    assert outcome.state in (RunState.aborted, RunState.failed)
    assert "voltage" in (outcome.reason or "")
    events = [json.loads(line) for line in (root / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert "limit_trip" in kinds and kinds[-1] == "run_ended"
    ex = execs[0]
    st = run_virtual_strict(ex.bind.cycler.status())
    assert st.current_A == 0.0  # safe state: no current
    # the instrument's own limit (3.6 V) tripped the channel too: it never exceeded it
    data = pq.read_table(root / "data").to_pandas()
    assert data.voltage_V.max() <= 3.6 + 2e-3


def test_operator_abort_reaches_safe_state(tmp_path: Path) -> None:
    proto = load_protocol("rate_test")
    execs: list[Executor] = []

    async def main() -> Any:
        import asyncio

        started = asyncio.Event()

        def on_executor(ex: Executor) -> None:
            execs.append(ex)
            started.set()

        async def abort_later() -> None:
            await started.wait()
            await asyncio.sleep(20 * 3600)
            execs[0].request_abort("operator test")

        req = RunRequest(
            protocol=proto,
            protocol_yaml=dump_protocol_yaml(proto),
            out_dir=tmp_path,
            station=INPROCESS_STATION,
            options=RunOptions(poll_s=60.0),
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(abort_later())
            res = await execute_run(req, on_executor=on_executor)
        st = await execs[0].bind.cycler.status()
        return res, st

    (outcome, _root), st = run_virtual_strict(main())
    assert outcome.state == RunState.aborted and outcome.reason == "operator test"
    assert st.current_A == 0.0
    assert outcome.run_time_s < 21 * 3600
