"""Full furnace runs through execute_run: drivers against the simulators over loopback TCP,
on the virtual clock."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from labrig.orchestrator.events import RunState

from .support import SHORT, run_thermal

RATE = 2 / 60  # K/s, the library anneal's 2 K/min


def test_library_anneal_follows_the_ramp_and_holds_the_dwell(tmp_path: Path) -> None:
    r = run_thermal("anneal_synthetic_air_400C", tmp_path)
    assert r.outcome.state is RunState.finished, r.outcome.reason
    s = r.series
    t, step, sp, pv = s["time_s"], s["step"], s["setpoint_C"], s["temperature_C"]
    assert r.outcome.rows == len(t) > 300
    # the controller carried out the ramp: its setpoint climbs at 2 K/min and PV follows
    ramp = step == 2
    tr, spr, pvr = t[ramp], sp[ramp], pv[ramp]
    assert len(tr) > 150
    slope = np.polyfit(tr, spr, 1)[0]
    assert abs(slope - RATE) < 0.02 * RATE
    late = tr > tr[0] + 600.0  # after the first 10 min (dead time and lag)
    assert np.all(np.abs(pvr[late] - (pvr[0] + RATE * (tr[late] - tr[0]))) < 5.0)
    assert np.all(np.abs(pvr - spr) < 5.0)
    dwell = step == 3
    assert np.sum(dwell) >= 59
    assert np.all(np.abs(pv[dwell] - 400.0) < 5.0)
    assert pv.max() < 406.0
    # cooled under gas before the gas was closed
    n2_closed = [
        e for e in r.of_kind("step_started") if e["data"]["label"].startswith("Set gas N2 to 0")
    ]
    assert n2_closed and pv[t <= n2_closed[0]["run_time_s"]][-1] <= 40.0
    summary = json.loads((r.root / "summary.json").read_text())
    assert summary == json.loads(json.dumps(r.outcome.summary))
    (d,) = summary["dwells"]
    assert d["target_C"] == 400.0 and d["within_fraction"] == 1.0
    assert 0.0 <= summary["overshoot_K"] < 6.0
    assert summary["ramps"][0]["max_tracking_error_K"] < 5.0
    # the furnace ended in its safe state
    ctrl = r.ex.sims["furnace"].furnace.controller
    assert ctrl.manual and ctrl.output_pct == 0.0 and ctrl.program_state == "reset"
    meta = json.loads((r.root / "run.json").read_text())
    assert meta["kind"] == "thermal" and meta["state"] == "finished" and meta["rows"] == len(t)


def test_gas_flows_reach_setpoint_and_total_gas_is_flow_times_time(tmp_path: Path) -> None:
    r = run_thermal("anneal_synthetic_air_400C", tmp_path)
    s = r.series
    t = s["time_s"]
    on = s["flow_setpoint_N2_sccm"] > 0
    for line, sp in (("N2", 118.5), ("O2", 31.5)):
        flowing = s[f"flow_setpoint_{line}_sccm"] == sp
        assert np.all(np.abs(s[f"flow_{line}_sccm"][flowing] - sp) < 0.02 * sp)
    assert np.all(s["flow_Ar_sccm"] == 0.0)
    starts = {e["data"]["label"]: e["run_time_s"] for e in r.of_kind("step_started")}
    n2_s = starts["Set gas N2 to 0 sccm"] - starts["Set gas N2 to 118.5 sccm"]
    o2_s = starts["Set gas O2 to 0 sccm"] - starts["Set gas O2 to 31.5 sccm and wait 10 min"]
    gas = r.outcome.summary["gas"]
    period = 60.0
    # recorded flows are integrated between rows: within one record period of the truth
    assert abs(gas["N2"]["used_scc"] - 118.5 * n2_s / 60) <= 118.5 * period / 60
    assert abs(gas["O2"]["used_scc"] - 31.5 * o2_s / 60) <= 31.5 * period / 60
    assert gas["N2"]["used_L"] > 40.0  # ~7.8 h at 118.5 sccm
    assert on[1:].any()
    assert set(gas) == {"N2", "O2"}  # Ar was never used
    assert t[-1] == r.outcome.summary["duration_s"] + t[0]


def test_samples_are_recorded_and_cool_step_waits_for_the_furnace(tmp_path: Path) -> None:
    r = run_thermal(SHORT, tmp_path)
    assert r.outcome.state is RunState.finished, r.outcome.reason
    meta = json.loads((r.root / "run.json").read_text())
    assert meta["samples"] == ["S-1", "S-2"]
    cool = r.series["step"] == 4
    assert cool.any()
    assert r.series["temperature_C"][-1] <= 305.0  # cool target + tolerance
    ramps = {x["target_C"]: x for x in r.outcome.summary["ramps"]}
    assert set(ramps) == {400.0, 300.0}


def test_hardware_path_opens_drivers_from_station_addresses(tmp_path: Path) -> None:
    """sim=False: drivers built from a station file's URLs (here served by simulators)."""
    from labrig.orchestrator.runner import RunRequest, execute_run
    from labrig.orchestrator.station import InstrumentConfig, Position, StationConfig
    from labrig.orchestrator.thermal import ThermalOptions, ThermalOutcome, read_series
    from labrig.protocols.loader import dump_protocol_yaml, load_protocol
    from labrig.simulators.furnace import start_eurotherm_sim
    from labrig.simulators.gas import start_alicat_sim
    from tests.helpers import run_virtual_strict

    proto = load_protocol(SHORT)

    async def main() -> tuple[ThermalOutcome, Path, float]:
        async with (
            await start_eurotherm_sim(address=3, limit_C=455.0) as fsim,
            await start_alicat_sim(units={"A": "N2", "B": "O2"}) as gsim,
        ):
            station = StationConfig(
                name="lab",
                instruments={
                    "oven": InstrumentConfig(
                        driver="eurotherm", address=fsim.address, options={"unit": 3}
                    ),
                    "mfc": InstrumentConfig(
                        driver="alicat", address=gsim.address, channels=2, options={"units": "AB"}
                    ),
                },
                positions=[
                    Position(
                        name="t1",
                        kind="furnace",
                        furnace="oven",
                        gas={"N2": "mfc/0", "O2": "mfc/1"},
                    )
                ],
            )
            req = RunRequest(
                protocol=proto,
                protocol_yaml=dump_protocol_yaml(proto),
                out_dir=tmp_path,
                station=station,
                sim=False,
                options=ThermalOptions(poll_s=60.0, safety_period_s=60.0),
            )
            outcome, root = await execute_run(req)
            assert isinstance(outcome, ThermalOutcome)
            return outcome, root, fsim.furnace.controller.output_pct

    outcome, root, out_pct = run_virtual_strict(main())
    assert outcome.state is RunState.finished, outcome.reason
    assert out_pct == 0.0
    s = read_series(root)
    assert np.nanmax(s["temperature_C"]) > 395.0
    assert set(outcome.summary["gas"]) == {"N2", "O2"}
