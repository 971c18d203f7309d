"""MQTT subscribers see a run's events as the run records them: instrument-dated and in
time order. A dry run on the ``--sim`` station (MACCOR over its wire, through the lab's
driver; EIS checkpoints on the simulated BioLogic) publishes through a real Mosquitto."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from labrig.orchestrator.events import RunState
from labrig.orchestrator.mqtt import attach_executor, open_publisher_for_run
from labrig.orchestrator.mqtt.testing import LocalMosquitto
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.protocols.loader import load_protocol_text
from tests.helpers import run_virtual_strict

from .support import recording, settings_for

PROTOCOL = """
name: mqtt event order
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.2, 3.75], current_abs_mA: 5.0}
defaults: {record: {every_s: 60}}
sequence:
  - label: aging
    repeat: 4
    steps:
      - Charge at 1C until 3.68 V or 90 min
      - Discharge at 1C until 2.28 V or 90 min
      - Rest for 10 minutes
    checkpoints:
      - label: eis
        at: [2, 4]
        counts_as_cycle: false
        steps: ["EIS from 100 kHz to 1 Hz, 5 per decade, 10 mV amplitude at OCV"]
"""


async def _run(broker: LocalMosquitto, out_dir: Path) -> Any:
    protocol = load_protocol_text(PROTOCOL, source_name="order.yaml")
    req = RunRequest(protocol=protocol, protocol_yaml=PROTOCOL, out_dir=out_dir)

    async def main() -> Any:
        async with open_publisher_for_run(settings_for(broker), req) as pub:
            outcome, root = await execute_run(
                req, sinks=[pub], on_executor=lambda ex: attach_executor(pub, ex)
            )
            assert await pub.flush(10)
            return outcome, root

    return await asyncio.to_thread(run_virtual_strict, main())


async def test_subscribers_get_the_events_in_time_order_dated_by_the_records(
    broker: LocalMosquitto, tmp_path: Path
) -> None:
    async with recording(broker) as rec:
        outcome, root = await _run(broker, tmp_path)
        stored = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
        await rec.wait_for(lambda r: len(r.on("/events")) >= len(stored))
    assert outcome.state is RunState.finished, outcome.reason
    got = rec.json_on("/events")
    assert [(e["seq"], e["kind"], e["run_time_s"]) for e in got] == [
        (e["seq"], e["kind"], e["run_time_s"]) for e in stored
    ]
    times = [e["run_time_s"] for e in got]
    assert all(a <= b for a, b in itertools.pairwise(times))
    data = pq.read_table(root / "data").to_pandas()
    last = data.groupby("cycle")["time_s"].max()
    ended = {e["data"]["cycle"]: e for e in got if e["kind"] == "cycle_ended"}
    assert sorted(ended) == list(last.index) == [1, 2, 3, 4]
    for cycle, t in last.items():
        assert abs(ended[cycle]["run_time_s"] - t) < 1e-6
    # the EIS after cycle 2 comes after cycle 2 has ended, before anything of cycle 3
    kinds = [(e["kind"], e["data"].get("cycle"), e["data"].get("checkpoint")) for e in got]
    eis = kinds.index(("checkpoint_started", None, "eis"))
    assert kinds.index(("cycle_ended", 2, None)) < eis
    assert eis < min(i for i, k in enumerate(kinds) if k[1] == 3)
    steps = {e["data"]["step_id"]: e for e in got if e["kind"] == "step_started"
             and e["data"].get("step_id") is not None}  # fmt: skip
    first = data.groupby("step")["time_s"].min()
    for sid, t in first.items():
        assert abs(steps[sid]["run_time_s"] - t) < 1e-6
