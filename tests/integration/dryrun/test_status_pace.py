"""While a block runs, the retained status follows each new step at once and otherwise
goes out every ``status_every_s`` (telemetry carries the live readings every collection)."""

from __future__ import annotations

import json
from pathlib import Path

from labrig.orchestrator.events import RunState
from labrig.orchestrator.run.lifecycle import RunOptions
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import INPROCESS_STATION
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from tests.helpers import run_virtual_strict

from .test_event_times import StatusSink

PROTOCOL = """
name: status pace
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.9], current_abs_mA: 5.0}
defaults: {record: {every_s: 30}}
sequence:
  - Charge at 0.1C until 3.7 V or 6 h
  - Rest for 2 h
  - Discharge at 0.1C until 2.3 V or 6 h
"""


def test_status_follows_steps_and_otherwise_its_own_period(tmp_path: Path) -> None:
    proto = load_protocol_text(PROTOCOL, source_name="pace.yaml")
    sink = StatusSink()
    options = RunOptions(poll_s=60.0, collect_s=60.0, status_every_s=1800.0)
    req = RunRequest(
        protocol=proto,
        protocol_yaml=dump_protocol_yaml(proto),
        out_dir=tmp_path,
        station=INPROCESS_STATION,
        options=options,
    )
    outcome, root = run_virtual_strict(execute_run(req, sinks=[sink]))
    assert outcome.state == RunState.finished, outcome.reason
    running = [s for s in sink.statuses if s.state == RunState.running]
    # a reading every collection (about one a minute of run time) ...
    assert len(sink.telemetry) > 200
    # ... but statuses only on the steps' changes and every half hour
    hours = outcome.run_time_s / 3600
    assert len(running) <= 2 * hours + 10
    # each step's first status comes with the first collection that saw the step
    events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
    started = {e["data"]["step"]: e["run_time_s"] for e in events if e["kind"] == "step_started"}
    assert len(started) == 3
    for step, t0 in started.items():
        first = next(s for s in running if s.step == step)
        # collections every 60 s of run time; records every 30 s
        assert t0 <= first.run_time_s <= t0 + 60.0 + 30.0, (step, t0, first.run_time_s)
