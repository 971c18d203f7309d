"""Event times and the per-cycle table come from the instrument's records.

A scientist reads ``events.jsonl`` and ``cycles.csv`` next to ``data/``: a cycle ends at
its last record, a step starts at its first record and ends at its last, each step event
names the step's own cycle, the events of a run are in time order on the data's clock
(run time since the run started, no offset), a cycle's ``cycle_ended`` comes before
anything of the next cycle and before the checkpoint that follows it, and the status
names the step of the latest record. Checked on the ``--sim`` station (MACCOR over its
wire protocol, through the lab's driver) and on the in-process simulators.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.events import Event, RunState, RunStatus, Telemetry
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import DEFAULT_STATION, INPROCESS_STATION
from labrig.protocols.loader import dump_protocol_yaml, load_protocol, load_protocol_text
from tests.helpers import run_virtual_strict

# A 1000-cycle endurance protocol made short: formation, EIS of the formed cell, aging
# with rests after each half-cycle, a check-up cycle every 5 and EIS after cycles 1, 6, 12
ENDURANCE = """
name: endurance, short
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.2, 3.75], current_abs_mA: 5.0, temperature_degC: [20, 60]}
defaults: {record: {every_s: 30, dV_mV: 5}, temperature_degC: 45}
sequence:
  - label: formation
    repeat: 2
    steps: [Charge at 0.2C until 3.68 V or 8 h, Discharge at 0.2C until 2.28 V or 8 h]
  - label: eis_formed
    steps: ["EIS from 100 kHz to 0.1 Hz, 5 per decade, 10 mV amplitude at OCV, after 30 min rest"]
  - label: aging
    repeat: 12
    steps:
      - Charge at 1C until 3.68 V or 90 min
      - Rest for 10 minutes
      - Discharge at 1C until 2.28 V or 90 min
      - Rest for 10 minutes
    checkpoints:
      - label: checkup
        every: 5
        steps: [Charge at 0.2C until 3.68 V or 8 h, Discharge at 0.2C until 2.28 V or 8 h]
      - label: eis
        at: [1, 6, 12]
        counts_as_cycle: false
        steps: ["EIS from 100 kHz to 0.1 Hz, 5 per decade, 10 mV amplitude at OCV"]
"""

STATIONS = {"maccor-wire": DEFAULT_STATION, "in-process": INPROCESS_STATION}


class StatusSink:
    """The statuses a run published, in order."""

    def __init__(self) -> None:
        self.statuses: list[RunStatus] = []
        self.telemetry: list[Telemetry] = []

    def publish_event(self, event: Event) -> None:
        pass

    def publish_status(self, status: RunStatus) -> None:
        self.statuses.append(status)

    def publish_telemetry(self, telemetry: Telemetry) -> None:
        self.telemetry.append(telemetry)


class Run:
    def __init__(self, root: Path, outcome: Any, sink: StatusSink) -> None:
        self.root = root
        self.outcome = outcome
        self.statuses = sink.statuses
        self.telemetry = sink.telemetry
        self.data = pq.read_table(root / "data").to_pandas().sort_values("record_seq")
        self.cycles = pd.read_csv(root / "cycles.csv")
        self.events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]


def _dry_run(proto: Any, out: Path, station: Any) -> Run:
    sink = StatusSink()
    req = RunRequest(
        protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=out, station=station
    )
    outcome, root = run_virtual_strict(execute_run(req, sinks=[sink]))
    assert outcome.state == RunState.finished, outcome.reason
    return Run(root, outcome, sink)


@pytest.fixture(
    scope="module",
    params=[(p, s) for p in ("rate_test", "endurance") for s in STATIONS],
    ids=lambda ps: f"{ps[0]}-{ps[1]}",
)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    name, station = request.param
    if name == "rate_test":
        proto = load_protocol("rate_test")
    else:
        proto = load_protocol_text(ENDURANCE, source_name="endurance.yaml")
    return _dry_run(proto, tmp_path_factory.mktemp(f"{name}-{station}"), STATIONS[station])


def test_cycle_end_time_is_the_last_record_of_the_cycle(run: Run) -> None:
    last = run.data.groupby("cycle")["time_s"].max()
    table = run.cycles.set_index("cycle")["end_time_s"]
    assert list(table.index) == list(last.index)
    np.testing.assert_allclose(table.to_numpy(), last.to_numpy(), rtol=0, atol=1e-6)
    # every cycle ends at its own time: none share the collection time of a block
    assert table.is_monotonic_increasing and table.is_unique


def test_cycle_ended_event_matches_the_table(run: Run) -> None:
    ended = [e for e in run.events if e["kind"] == "cycle_ended"]
    assert [e["data"]["cycle"] for e in ended] == list(run.cycles["cycle"])
    for e, t in zip(ended, run.cycles["end_time_s"], strict=True):
        assert e["run_time_s"] == pytest.approx(t, abs=1e-6)


def test_step_events_carry_their_step_own_cycle_and_record_times(run: Run) -> None:
    by_step = run.data.groupby("step")
    first, last = by_step["time_s"].min(), by_step["time_s"].max()
    cycle_of = by_step["cycle"].agg(lambda c: sorted(set(c)))
    started = {e["data"]["step_id"]: e for e in run.events if e["kind"] == "step_started"
               and e["data"].get("step_id") is not None}  # fmt: skip
    ended = {e["data"]["step_id"]: e for e in run.events if e["kind"] == "step_ended"
             and e["data"].get("step_id") is not None}  # fmt: skip
    assert set(started) == set(ended) >= set(first.index)
    for sid in first.index:
        assert cycle_of[sid] == [started[sid]["data"]["cycle"]], sid
        assert ended[sid]["data"]["cycle"] == started[sid]["data"]["cycle"], sid
        assert started[sid]["run_time_s"] == pytest.approx(first[sid], abs=1e-6), sid
        assert ended[sid]["run_time_s"] == pytest.approx(last[sid], abs=1e-6), sid


def test_events_are_in_time_order_on_one_clock(run: Run) -> None:
    events = run.events
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    times = [e["run_time_s"] for e in events]
    assert all(a <= b for a, b in itertools.pairwise(times)), "events out of order"
    # a step ends before the next one starts
    steps = [e for e in events if e["kind"] in ("step_started", "step_ended")]
    for a, b in itertools.pairwise(steps):
        assert a["kind"] != b["kind"], (a["seq"], a["kind"], b["seq"], b["kind"])
    # run time and wall time are one clock: their difference is the same for every event
    offsets = np.array([e["wall_time"] - e["run_time_s"] for e in events])
    assert np.ptp(offsets) < 1e-3
    assert events[0]["kind"] == "run_started" and events[0]["run_time_s"] == 0.0
    assert events[-1]["kind"] == "run_ended"
    assert times[-1] >= float(run.data["time_s"].max())


def test_first_record_is_on_the_run_started_clock(run: Run) -> None:
    t_first = float(run.data["time_s"].min())
    first_step = next(e for e in run.events if e["kind"] == "step_started")
    assert t_first >= 0.0
    assert first_step["run_time_s"] == pytest.approx(t_first, abs=1e-6)
    # nothing the run did on the host before the first step is dated after it
    before = run.events[: run.events.index(first_step)]
    assert all(e["run_time_s"] <= t_first for e in before)


def test_cycle_ended_precedes_the_next_cycle_and_the_checkpoint_after_it(run: Run) -> None:
    events = run.events
    index = {e["data"]["cycle"]: i for i, e in enumerate(events) if e["kind"] == "cycle_ended"}
    for n, i in index.items():
        later = [j for j, e in enumerate(events) if e["data"].get("cycle") == n + 1]
        if later:
            assert i < min(later), f"cycle {n + 1} began before cycle {n} ended"
        end = events[i]["run_time_s"]
        for j, e in enumerate(events):
            if e["kind"] == "checkpoint_started" and e["run_time_s"] >= end:
                assert j > i, f"checkpoint at {e['run_time_s']} before cycle {n} ended"


def test_status_names_the_step_of_the_latest_record(run: Run) -> None:
    data = run.data
    checked = 0
    for st in run.statuses:
        if st.current_A is None or st.voltage_V is None or st.step_index is None:
            continue
        rec = data[(data.current_A == st.current_A) & (data.voltage_V == st.voltage_V)]
        if len(rec) != 1:
            continue  # an ambiguous reading (a rest at one voltage): nothing to compare
        assert int(rec["step"].iloc[0]) == st.step_index, (st.step, st.current_A)
        assert int(rec["cycle"].iloc[0]) == st.cycle, (st.step, st.cycle)
        checked += 1
    assert checked >= 5


def test_live_readings_name_the_step_of_their_record(run: Run) -> None:
    data = run.data.set_index("time_s")
    labels = {e["data"]["step_id"]: e["data"]["step"] for e in run.events
              if e["kind"] == "step_started" and e["data"].get("step_id") is not None}  # fmt: skip
    assert run.telemetry
    for t in run.telemetry:
        at = data.loc[[t.run_time_s]]  # the reading is a record at its time
        rec = at[(at.voltage_V == t.voltage_V) & (at.current_A == t.current_A)].iloc[0]
        assert t.step_index == int(rec["step"]) and t.cycle == int(rec["cycle"])
        assert t.step == labels[t.step_index]
