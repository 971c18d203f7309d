"""Furnace faults end in the safe state with the purge kept on.

The supervision loop here is what the orchestrator's safety layer does, written against
the capability interfaces only; the simulated limit is the independent guard.
"""

from __future__ import annotations

import asyncio

from labrig.drivers.alicat import AlicatBus, AlicatFlow
from labrig.drivers.capabilities import (
    Furnace,
    FurnaceSegment,
    GasFlow,
    InstrumentError,
    SafetyTrip,
)
from labrig.drivers.eurotherm import EurothermFurnace, SensorBreak
from labrig.drivers.transport import transport_from_url
from labrig.simulators.furnace import EurothermSimulator, start_eurotherm_sim
from labrig.simulators.gas import AlicatSimulator, start_alicat_sim
from tests.helpers import run_virtual_strict

HOST_LIMIT_C = 420.0


async def supervise(furnace: Furnace, gases: list[GasFlow], period_s: float) -> str:
    """Poll until a trip; then furnace safe state, gases to theirs (purge kept)."""
    while True:
        try:
            pv = await furnace.read_temperature()
            reason = f"over-temperature {pv:.1f} °C" if pv > HOST_LIMIT_C else ""
        except SafetyTrip as exc:
            reason = str(exc)
        if reason:
            await furnace.safe_state()
            for gas in gases:
                await gas.safe_state()
            return reason
        await asyncio.sleep(period_s)


async def rig(
    sims: tuple[EurothermSimulator, AlicatSimulator],
    scenario: str,
) -> tuple[str, float]:
    fsim, gsim = sims
    loop = asyncio.get_running_loop()
    async with (
        EurothermFurnace.from_url(fsim.address, 1) as furnace,
        transport_from_url(gsim.address) as glink,
    ):
        bus = AlicatBus(glink)
        gases: list[GasFlow] = [AlicatFlow(bus, "A"), AlicatFlow(bus, "B")]
        await gases[0].set_flow(118.5)
        await gases[1].set_flow(31.5)
        await furnace.load_program(
            [
                FurnaceSegment("ramp", 400.0, rate_K_per_s=10 / 60),
                FurnaceSegment("dwell", duration_s=8 * 3600.0),
            ]
        )
        await furnace.run_program()
        await asyncio.sleep(3000.0)  # at temperature
        t_fault = loop.time()
        if scenario == "stuck":
            fsim.furnace.inject(heater_stuck_on=True)
        else:
            fsim.furnace.inject(thermocouple_open=True)
        reason = await supervise(furnace, gases, period_s=1.0)
        detected_after = loop.time() - t_fault
        assert await furnace.read_output() == 0.0
        assert await furnace.program_status() == "reset"
        await asyncio.sleep(3600.0)
        assert await furnace.read_output() == 0.0  # still safe an hour later
        if scenario == "stuck":
            # the heater kept heating through the stuck contactor until the limit cut it
            assert await furnace.read_temperature() < HOST_LIMIT_C
        assert (await gases[0].read_flow()) > 117.0  # purge kept
        assert (await gases[1].read_flow()) > 30.5
        return reason, detected_after


def test_over_temperature_trips_the_limit_and_ends_in_safe_state() -> None:
    async def main() -> tuple[str, float, EurothermSimulator]:
        async with (
            await start_eurotherm_sim(limit_C=450.0) as fsim,
            await start_alicat_sim(transport="pty") as gsim,
        ):
            reason, after = await rig((fsim, gsim), "stuck")
            return reason, after, fsim

    reason, _, fsim = run_virtual_strict(main())
    assert reason.startswith("over-temperature")
    ctrl = fsim.furnace.controller
    assert ctrl.manual and ctrl.output_pct == 0.0 and ctrl.program_state == "reset"
    limit = fsim.furnace.limit
    assert limit is not None and limit.tripped  # the independent guard acted on its own
    assert fsim.furnace.plant.power_W == 0.0
    assert fsim.furnace.plant.temperature_C < 450.0  # cooling after the cut
    assert not limit.reset_by_hand() or fsim.furnace.plant.limit_tc_C < 445.0


def test_thermocouple_open_is_detected_within_5_s_and_ends_in_safe_state() -> None:
    async def main() -> tuple[str, float, EurothermSimulator]:
        async with (
            await start_eurotherm_sim() as fsim,
            await start_alicat_sim() as gsim,
        ):
            reason, after = await rig((fsim, gsim), "open")
            return reason, after, fsim

    reason, after, fsim = run_virtual_strict(main())
    assert "thermocouple open" in reason
    assert after <= 5.0
    assert fsim.furnace.controller.output_pct == 0.0
    assert fsim.furnace.plant.power_W == 0.0


def test_sensor_break_is_a_typed_safety_trip() -> None:
    assert issubclass(SensorBreak, SafetyTrip) and issubclass(SensorBreak, InstrumentError)
