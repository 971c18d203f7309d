"""Eurotherm driver against the furnace simulator over loopback TCP and a real
pseudo-terminal, on the virtual clock (hours of anneal in a second), and over a
pseudo-terminal on the real clock.

The virtual clock jumps only when no I/O is on its way; for a pty that includes bytes
still inside the kernel's tty worker (orchestrator.clock polls its terminals before each
jump), so the anneal runs over a pty as it does over TCP, however loaded the machine.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from labrig.drivers.capabilities import (
    Furnace,
    FurnaceSegment,
    InstrumentProtocolError,
    InstrumentTimeout,
)
from labrig.drivers.eurotherm import EurothermFurnace, settings_2400, settings_3200
from labrig.drivers.modbus import ModbusProtocolError, ModbusRtuBus
from labrig.simulators.furnace import start_eurotherm_sim
from labrig.simulators.furnace.modbus_slave import crc_bytes
from tests.helpers import run_virtual_strict

RATE = 2 / 60  # 2 K/min


async def test_the_driver_talks_to_the_controller_over_a_pseudo_terminal() -> None:
    async with await start_eurotherm_sim(transport="pty", address=3) as sim:
        assert sim.address.startswith("serial:///dev/pts/")
        async with EurothermFurnace.from_url(sim.address, 3, settings_2400()) as furnace:
            assert await furnace.read_temperature() == 25.0
            await furnace.load_program([FurnaceSegment("ramp", 400.0, rate_K_per_s=RATE)])
            assert await furnace.program_status() == "reset"
            await furnace.run_program()
            assert await furnace.program_status() == "running"
            await furnace.safe_state()
            assert await furnace.program_status() == "reset"
            assert await furnace.is_manual()
    assert sim.slave.frames_bad == 0


@pytest.mark.parametrize("transport", ["tcp", "pty"])
def test_anneal_programme_follows_the_ramp(transport: Literal["tcp", "pty"]) -> None:
    async def main() -> list[tuple[float, float, float, str]]:
        loop = asyncio.get_running_loop()
        async with (
            await start_eurotherm_sim(transport=transport) as sim,
            EurothermFurnace.from_url(sim.address, 1, settings_2400()) as furnace,
        ):
            assert isinstance(furnace, Furnace)
            await furnace.load_program(
                [
                    FurnaceSegment("ramp", 400.0, rate_K_per_s=RATE),
                    FurnaceSegment("dwell", duration_s=3600.0),
                    FurnaceSegment("step", 25.0),  # heater off: natural cooling
                ]
            )
            await furnace.run_program()
            t0 = loop.time()
            trace = []
            while True:
                status = await furnace.program_status()
                pv = await furnace.read_temperature()
                trace.append((loop.time() - t0, pv, await furnace.read_setpoint(), status))
                if status == "complete" and pv < 300.0:
                    break
                await asyncio.sleep(60.0)
            await furnace.safe_state()
            assert await furnace.read_output() == 0.0
            assert await furnace.program_status() == "reset"
            return trace

    trace = run_virtual_strict(main())
    ramp_end = (400.0 - 25.0) / RATE
    ramp = [(t, pv) for t, pv, _, _ in trace if 600.0 <= t <= ramp_end]
    assert len(ramp) > 150
    for t, pv in ramp:
        assert abs(pv - (25.0 + RATE * t)) < 5.0, (t, pv)
    dwell = [pv for t, pv, _, _ in trace if ramp_end + 600.0 <= t <= ramp_end + 3600.0]
    assert dwell and all(abs(pv - 400.0) < 3.0 for pv in dwell)
    assert max(pv for _, pv, _, _ in trace) < 406.0  # small overshoot only
    statuses = [s for *_, s in trace]
    assert statuses[0] == "running" and statuses[-1] == "complete"
    assert trace[-1][0] > ramp_end + 3600.0  # the dwell lasted its hour
    cooling = [pv for t, pv, _, s in trace if s == "complete"]
    assert cooling == sorted(cooling, reverse=True)


def test_3200_setpoint_rate_limit_over_tcp_with_float_registers() -> None:
    async def main() -> tuple[float, float, float]:
        async with (
            await start_eurotherm_sim(series="3200", address=7) as sim,
            EurothermFurnace.from_url(
                sim.address, 7, settings_3200(use_float_registers=True)
            ) as furnace,
        ):
            await furnace.set_setpoint(200.0, rate_K_per_s=RATE)
            assert sim.bank.ramp_units == 0  # per minute, read from register 531
            await asyncio.sleep(1800.0)
            wsp = await furnace.read_setpoint()
            target = await furnace.read_target_setpoint()
            pv = await furnace.read_temperature()
            with pytest.raises(Exception, match="programmer layout"):
                await furnace.load_program([FurnaceSegment("step", 50.0)])
            return wsp, target, pv

    wsp, target, pv = run_virtual_strict(main())
    assert target == 200.0
    assert wsp == pytest.approx(25.0 + 60.0, abs=0.5)  # 30 min at 2 K/min
    assert abs(pv - wsp) < 3.0


def test_wire_faults_become_typed_errors_and_the_link_recovers() -> None:
    async def main() -> None:
        async with (
            await start_eurotherm_sim() as sim,
            ModbusRtuBus(sim.address, timeout_s=0.5, retries=1) as client,
        ):
            furnace = EurothermFurnace(client, 1)
            assert await furnace.read_temperature() == 25.0

            sim.faults.garbage = True
            with pytest.raises(InstrumentProtocolError):
                await furnace.read_temperature()
            sim.faults.clear()

            sim.faults.silent = True
            with pytest.raises(InstrumentTimeout):
                await furnace.read_temperature()
            sim.faults.clear()

            sim.faults.truncate_to = 4
            with pytest.raises(InstrumentTimeout):
                await furnace.read_temperature()
            sim.faults.clear()

            sim.faults.drop_next = 1  # one lost reply: the retry covers it
            assert await furnace.read_temperature() == 25.0

            def other_slave(reply: bytes) -> bytes:
                body = bytes([9]) + reply[1:-2]
                return body + crc_bytes(body)

            sim.faults.extra.append(other_slave)
            with pytest.raises(ModbusProtocolError, match="slave 9") as info:
                await furnace.read_temperature()
            assert info.value.command and info.value.reply
            sim.faults.clear()

            with pytest.raises(ModbusProtocolError, match="illegal data value"):
                await client.write_register(1, 3, 500)  # output in automatic: refused
            assert await furnace.read_temperature() == 25.0

    run_virtual_strict(main())
