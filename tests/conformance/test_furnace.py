"""Furnace conformance: the Eurotherm driver against its Modbus RTU simulator, and
whatever joins :mod:`.implementations`."""

from __future__ import annotations

import asyncio
import math

import pytest

from labrig.drivers.capabilities import Furnace, FurnaceSegment, InstrumentError
from labrig.orchestrator.instruments import Capability

from .implementations import Impl, ids, implementations
from .support import run_connected

IMPLS = implementations(Capability.furnace)
each = pytest.mark.parametrize("impl", IMPLS, ids=ids(IMPLS))
MIN = 60.0

#: ramp to 100 °C at 10 K/min (about 8 min from room), dwell 10 min, end
PROGRAMME = (
    FurnaceSegment("ramp", 100.0, rate_K_per_s=10.0 / MIN),
    FurnaceSegment("dwell", duration_s=10 * MIN),
    FurnaceSegment("end"),
)


def test_every_furnace_is_covered() -> None:
    assert {"eurotherm"} <= set(ids(IMPLS))


@each
def test_is_a_furnace_that_reads_finite_values(impl: Impl) -> None:
    async def body(f: Furnace) -> None:
        assert isinstance(f, Furnace) and f.name
        for value in (await f.read_temperature(), await f.read_setpoint()):
            assert math.isfinite(value) and 0.0 < value < 60.0  # a cold furnace
        assert 0.0 <= await f.read_output() <= 100.0

    run_connected(impl, body)


@each
def test_safe_state_is_idempotent_output_zero_programme_reset(impl: Impl) -> None:
    async def body(f: Furnace) -> None:
        await f.safe_state()  # on an idle furnace too
        await f.load_program(PROGRAMME)
        await f.run_program()
        await asyncio.sleep(3 * MIN)
        assert await f.read_output() > 0  # heating
        await f.safe_state()
        await f.safe_state()
        assert await f.read_output() == 0.0
        assert await f.program_status() == "reset"
        t = await f.read_temperature()
        await asyncio.sleep(60 * MIN)
        assert await f.read_output() == 0.0
        assert await f.read_temperature() < t  # heater off: it cools

    run_connected(impl, body)


@each
def test_a_programme_runs_to_complete(impl: Impl) -> None:
    async def body(f: Furnace) -> float:
        assert await f.program_status() == "reset"
        await f.load_program(PROGRAMME)
        await f.run_program()
        assert await f.program_status() == "running"
        await asyncio.sleep(5 * MIN)
        sp = await f.read_setpoint()
        assert 40.0 < sp < 100.0  # the working setpoint ramps at the programme's rate
        with pytest.raises(InstrumentError):
            await f.load_program(PROGRAMME)  # not while one runs
        await asyncio.sleep(20 * MIN)
        status = await f.program_status()
        pv = await f.read_temperature()
        await f.safe_state()
        assert status == "complete"
        return pv

    assert run_connected(impl, body) == pytest.approx(100.0, abs=5.0)


@each
def test_hold_stops_the_programme_time_and_run_resumes_it(impl: Impl) -> None:
    async def body(f: Furnace) -> None:
        await f.load_program(PROGRAMME)
        await f.run_program()
        await asyncio.sleep(3 * MIN)
        await f.hold_program()
        assert await f.program_status() == "hold"
        held_sp = await f.read_setpoint()
        await asyncio.sleep(15 * MIN)
        assert await f.program_status() == "hold"
        assert await f.read_setpoint() == pytest.approx(held_sp, abs=0.5)  # time stopped
        await f.run_program()  # resume where it stopped
        assert await f.program_status() == "running"
        # 28 min after the start, 13 of them running: without the hold the programme
        # (about 18 min) would be over; it is not
        await asyncio.sleep(10 * MIN)
        assert await f.program_status() == "running"
        assert await f.read_setpoint() > held_sp  # it went on from where it was held
        await asyncio.sleep(10 * MIN)
        assert await f.program_status() == "complete"
        await f.safe_state()

    run_connected(impl, body)


@each
def test_setpoint_with_a_rate_limit_ramps_towards_it(impl: Impl) -> None:
    async def body(f: Furnace) -> None:
        start = await f.read_setpoint()
        await f.set_setpoint(80.0, rate_K_per_s=5.0 / MIN)
        await asyncio.sleep(4 * MIN)
        sp = await f.read_setpoint()
        assert start < sp < 80.0  # on its way, no jump
        await asyncio.sleep(30 * MIN)
        assert await f.read_setpoint() == pytest.approx(80.0, abs=0.5)
        await f.safe_state()
        assert await f.read_output() == 0.0

    run_connected(impl, body)


@each
def test_the_loaded_programme_reads_back(impl: Impl) -> None:
    async def body(f: Furnace) -> None:
        await f.load_program(PROGRAMME)
        assert await f.read_program() == list(PROGRAMME)
        await f.run_program()
        assert await f.read_program() == list(PROGRAMME)  # also while it runs
        await f.safe_state()
        other = (FurnaceSegment("step", 80.0), FurnaceSegment("dwell", duration_s=2 * MIN))
        await f.load_program(other)
        assert await f.read_program() == [*other, FurnaceSegment("end")]

    run_connected(impl, body)
