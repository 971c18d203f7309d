"""The hardware path (``labrig run --station FILE``): drivers opened from station
addresses, here pointed at simulators on loopback, so no in-process shortcut is used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from labrig.orchestrator.events import RunState
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import InstrumentConfig, Position, StationConfig
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from labrig.simulators.chamber import start_espec_sim
from labrig.simulators.engine import ChannelEngine
from labrig.simulators.maccor import serve_maccor
from labrig.simulators.palmsens import serve_palmsens
from tests.helpers import run_virtual_strict

PROTOCOL = """
name: hardware path
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10, temperature_degC: [0, 60]}
defaults: {temperature_degC: 45}
sequence:
  - Charge at 0.5C until 3.68 V
  - Discharge at 0.5C until 2.28 V
  - EIS from 100 kHz to 1 Hz, 5 per decade, 10 mV amplitude at OCV
"""


def test_cell_run_through_station_addresses(tmp_path: Path) -> None:
    proto = load_protocol_text(PROTOCOL, source_name="hw.yaml")

    async def main() -> Any:
        import asyncio

        engine = ChannelEngine(None, now=asyncio.get_running_loop().time())
        chamber = await start_espec_sim()
        try:
            async with serve_maccor([engine]) as mac, serve_palmsens(engine, pty=False) as ps:
                station = StationConfig(
                    name="lab",
                    instruments={
                        "cycler": InstrumentConfig(driver="maccor", address=mac.url),
                        "eis": InstrumentConfig(driver="palmsens", address=ps.url),
                        "oven": InstrumentConfig(driver="espec", address=chamber.address),
                    },
                    positions=[
                        Position(name="A1", cycler="cycler/0", impedance="eis/0", chamber="oven")
                    ],
                )
                req = RunRequest(
                    protocol=proto,
                    protocol_yaml=dump_protocol_yaml(proto),
                    out_dir=tmp_path,
                    station=station,
                    sim=False,
                    durable=False,
                )
                return await execute_run(req)
        finally:
            await chamber.aclose()

    outcome, root = run_virtual_strict(main())
    assert outcome.state == RunState.finished, outcome.reason
    assert outcome.cycles == 1
    (spectrum,) = list((root / "eis").iterdir())
    assert pq.read_table(spectrum).num_rows == 26
    events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
    first_step = next(e for e in events if e["kind"] == "step_started")
    # the chamber was set to 45 °C and held stable for its 10 min before the first step
    assert first_step["run_time_s"] >= 600
    # one clock for data and events: the first record is where the first step started,
    # each step event at its records, the cycle at its last record, all in time order
    data = pq.read_table(root / "data").to_pandas()
    assert first_step["run_time_s"] == float(data["time_s"].min())
    for e in events:
        if e["kind"] in ("step_started", "step_ended") and e["data"].get("step_id") is not None:
            times = data.loc[data.step == e["data"]["step_id"], "time_s"]
            want = times.min() if e["kind"] == "step_started" else times.max()
            assert e["run_time_s"] == float(want), e
    (ended,) = [e for e in events if e["kind"] == "cycle_ended"]
    assert ended["run_time_s"] == float(data["time_s"].max())
    times = [e["run_time_s"] for e in events]
    assert times == sorted(times)
    eis_start = next(e for e in events if e["data"].get("step_type") == "eis")
    assert eis_start["run_time_s"] > ended["run_time_s"]
    meta = json.loads((root / "run.json").read_text())
    assert meta["simulated"] is False and meta["station"] == "lab"
