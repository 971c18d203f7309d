"""Furnace faults end in the safe state, with the event recorded and the purge kept on."""

from __future__ import annotations

from pathlib import Path

from labrig.orchestrator.events import RunState
from labrig.orchestrator.thermal import FurnaceExecutor, ThermalOptions

from .support import SHORT, Result, at_time, run_thermal

AT_DWELL_S = 5000.0  # well into SHORT's 2 h dwell at 400 °C


def assert_safe_with_purge(r: Result) -> None:
    fsim = r.ex.sims["furnace"].furnace
    ctrl = fsim.controller
    assert ctrl.manual and ctrl.output_pct == 0.0 and ctrl.program_state == "reset"
    units = r.ex.sims["gas"].units
    assert units["A"].setpoint == 118.5  # N2 purge kept on
    assert r.of_kind("run_ended")[-1]["data"]["state"] == r.outcome.state.value


def stuck_heater(ex: FurnaceExecutor) -> None:
    ex.sims["furnace"].furnace.inject(heater_stuck_on=True)


def test_stuck_heater_trips_over_temperature_to_safe_state(tmp_path: Path) -> None:
    r = run_thermal(
        SHORT,
        tmp_path,
        options=ThermalOptions(poll_s=60.0, safety_period_s=5.0),
        on_progress=at_time(AT_DWELL_S, stuck_heater),
    )
    assert r.outcome.state is RunState.aborted
    assert r.outcome.reason is not None and r.outcome.reason.startswith("over-temperature")
    (trip,) = r.of_kind("limit_trip")
    assert trip["data"]["quantity"] == "furnace_temperature_C"
    assert 420.0 <= trip["data"]["value"] < 425.0  # caught at peak + 20 K margin
    assert_safe_with_purge(r)
    assert not r.of_kind("resumed")


def test_lower_furnace_max_trips_before_the_margin(tmp_path: Path) -> None:
    text = SHORT.replace("furnace_max_C: 430", "furnace_max_C: 410")
    r = run_thermal(
        text,
        tmp_path,
        options=ThermalOptions(poll_s=60.0, safety_period_s=5.0),
        on_progress=at_time(AT_DWELL_S, stuck_heater),
    )
    assert r.outcome.state is RunState.aborted
    (trip,) = r.of_kind("limit_trip")
    assert trip["data"]["limit"] == 410.0 and 410.0 < trip["data"]["value"] < 412.0
    assert "furnace_max_C" in (r.outcome.reason or "")
    assert_safe_with_purge(r)


def test_open_thermocouple_ends_in_safe_state_within_5_s(tmp_path: Path) -> None:
    t_fault: list[float] = []

    def open_tc(ex: FurnaceExecutor) -> None:
        t_fault.append(ex.run_time())
        ex.sims["furnace"].furnace.inject(thermocouple_open=True)

    r = run_thermal(
        SHORT,
        tmp_path,
        options=ThermalOptions(poll_s=60.0, safety_period_s=5.0),
        on_progress=at_time(AT_DWELL_S, open_tc),
    )
    assert r.outcome.state is RunState.failed
    assert "thermocouple open" in (r.outcome.reason or "")
    (trip,) = r.of_kind("limit_trip")
    assert trip["data"]["quantity"] == "thermocouple"
    assert trip["run_time_s"] - t_fault[0] <= 5.0
    assert_safe_with_purge(r)


def test_gas_loss_aborts_to_safe_state_by_default(tmp_path: Path) -> None:
    def lose_o2(ex: FurnaceExecutor) -> None:
        ex.sims["gas"].units["B"].lose_supply()

    r = run_thermal(SHORT, tmp_path, on_progress=at_time(AT_DWELL_S, lose_o2))
    assert r.outcome.state is RunState.aborted
    assert "gas O2 stopped flowing" in (r.outcome.reason or "")
    (trip,) = r.of_kind("limit_trip")
    assert trip["data"]["quantity"] == "flow_O2_sccm" and trip["data"]["action"] == "abort"
    assert trip["data"]["value"] < 31.5 / 2
    assert_safe_with_purge(r)


def test_gas_loss_holds_the_programme_when_the_protocol_says_pause(tmp_path: Path) -> None:
    text = SHORT.replace(
        "limits: {furnace_max_C: 430}", "limits: {furnace_max_C: 430, on_violation: pause}"
    )
    seen: dict[str, float] = {}

    def hook(ex: FurnaceExecutor) -> None:
        t = ex.run_time()
        if "lost" not in seen and t >= AT_DWELL_S:
            seen["lost"] = t
            ex.sims["gas"].units["B"].lose_supply()
        elif "lost" in seen and "held" not in seen and ex.state is RunState.paused:
            seen["held"] = t
            ctrl = ex.sims["furnace"].furnace.controller
            seen["state"] = 1.0 if ctrl.program_state == "hold" else 0.0
        elif "held" in seen and "resumed" not in seen and t >= seen["held"] + 1800.0:
            # the gas is back; an operator resumes (a hold never resumes by itself)
            seen["resumed"] = t
            assert ex.state is RunState.paused
            ex.sims["gas"].units["B"].lose_supply(False)
            ex.request_resume()

    r = run_thermal(text, tmp_path, on_progress=hook)
    assert r.outcome.state is RunState.finished, r.outcome.reason
    assert seen["state"] == 1.0  # the controller's programme was held
    (trip,) = r.of_kind("limit_trip")
    assert trip["data"]["action"] == "hold"
    assert r.kinds().count("paused") == 1 and r.kinds().count("resumed") == 1
    # the dwell lasted its 2 h of programme time plus the hold
    (d,) = r.outcome.summary["dwells"]
    assert d["duration_s"] >= 2 * 3600 + 1800 - 120


def test_gas_hold_times_out_to_safe_state(tmp_path: Path) -> None:
    text = SHORT.replace(
        "limits: {furnace_max_C: 430}", "limits: {furnace_max_C: 430, on_violation: pause}"
    )

    def lose_o2(ex: FurnaceExecutor) -> None:
        ex.sims["gas"].units["B"].lose_supply()

    r = run_thermal(
        text,
        tmp_path,
        options=ThermalOptions(poll_s=60.0, safety_period_s=60.0, gas_hold_timeout_s=1200.0),
        on_progress=at_time(AT_DWELL_S, lose_o2),
    )
    assert r.outcome.state is RunState.aborted
    assert "not resumed" in (r.outcome.reason or "")
    assert_safe_with_purge(r)


def test_operator_abort_ends_in_safe_state(tmp_path: Path) -> None:
    r = run_thermal(
        SHORT, tmp_path, on_progress=at_time(AT_DWELL_S, lambda ex: ex.request_abort("stop"))
    )
    assert r.outcome.state is RunState.aborted and r.outcome.reason == "stop"
    assert_safe_with_purge(r)
