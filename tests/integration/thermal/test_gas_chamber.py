"""Alicat and chamber drivers against their simulators over real pty / TCP links."""

from __future__ import annotations

import asyncio

import pytest

from labrig.drivers.alicat import AlicatBus, AlicatFlow
from labrig.drivers.capabilities import (
    ChamberController,
    GasFlow,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeout,
)
from labrig.drivers.espec import EspecChamber
from labrig.drivers.transport import transport_from_url
from labrig.simulators.chamber import start_espec_sim
from labrig.simulators.gas import start_alicat_sim
from tests.helpers import run_virtual_strict


def test_synthetic_air_reaches_setpoint_on_one_bus_over_a_pty() -> None:
    async def main() -> dict[str, float]:
        async with (
            await start_alicat_sim(units={"A": "Air", "B": "Air"}, transport="pty") as sim,
            transport_from_url(sim.address) as link,
        ):
            bus = AlicatBus(link)
            n2 = AlicatFlow(bus, "A", name="N2", full_scale_sccm=200.0)
            o2 = AlicatFlow(bus, "B", name="O2", full_scale_sccm=200.0)
            assert isinstance(n2, GasFlow)
            await asyncio.gather(n2.select_gas("N2"), o2.select_gas("O2"))  # one lock
            assert await n2.read_register(46) == 8
            await n2.set_flow(118.5)
            await o2.set_flow(31.5)
            await asyncio.sleep(5.0)
            flows = {"N2": await n2.read_flow(), "O2": await o2.read_flow()}
            frame = await o2.read_frame()
            assert frame.gas == "O2" and frame.setpoint == 31.5
            with pytest.raises(InstrumentError, match="full scale"):
                await n2.set_flow(500.0)
            with pytest.raises(InstrumentError, match="unknown gas"):
                await n2.select_gas("Kryptonite")
            return flows

    flows = run_virtual_strict(main())
    assert flows["N2"] == pytest.approx(118.5, abs=0.5)
    assert flows["O2"] == pytest.approx(31.5, abs=0.5)


def test_gas_supply_loss_and_wire_faults_over_tcp() -> None:
    async def main() -> None:
        async with (
            await start_alicat_sim() as sim,
            transport_from_url(sim.address) as link,
        ):
            bus = AlicatBus(link, timeout_s=0.2, retries=1)
            n2 = AlicatFlow(bus, "A")
            await n2.set_flow(118.5)
            await asyncio.sleep(5.0)
            assert await n2.read_flow() == pytest.approx(118.5, abs=0.5)
            sim.units["A"].lose_supply()
            await asyncio.sleep(5.0)
            frame = await n2.read_frame()
            assert frame.setpoint == 118.5 and abs(frame.mass_flow) < 1.0  # stopped flowing

            sim.faults.garbage = True  # random bytes, maybe no CR at all
            with pytest.raises((InstrumentProtocolError, InstrumentTimeout)):
                await n2.read_frame()
            sim.faults.clear()
            sim.faults.extra.append(lambda reply: b"A +014.70 +0#5.00 +000.00 +000.00 +050.00 N2\r")
            with pytest.raises(InstrumentProtocolError, match="not a number") as info:
                await n2.read_frame()
            assert info.value.command == b"A\r"
            sim.faults.clear()
            sim.faults.silent = True
            with pytest.raises(InstrumentTimeout):
                await n2.read_flow()
            sim.faults.clear()
            ghost = AlicatFlow(bus, "Z")  # nobody answers at Z
            with pytest.raises(InstrumentTimeout):
                await ghost.read_flow()
            assert (await n2.read_frame()).setpoint == 118.5

    run_virtual_strict(main())


def test_chamber_settles_and_goes_to_standby() -> None:
    async def main() -> None:
        async with (
            await start_espec_sim(transport="pty") as sim,
            transport_from_url(sim.address) as link,
        ):
            chamber = EspecChamber(link)
            assert isinstance(chamber, ChamberController)
            await chamber.set_temperature(45.0)
            assert sim.model.mode == "CONSTANT" and sim.model.power
            await asyncio.sleep(2 * 3600.0)
            assert abs(await chamber.read_temperature() - 45.0) <= 0.3
            mon = await chamber.monitor()
            assert mon.mode == "CONSTANT" and mon.alarms == 0
            with pytest.raises(InstrumentError, match="alarm band"):
                await chamber.set_temperature(120.0)
            await chamber.safe_state()
            assert sim.model.mode == "STANDBY"
            sim.faults.silent = True
            with pytest.raises(InstrumentTimeout):
                await chamber.read_temperature()

    run_virtual_strict(main())
