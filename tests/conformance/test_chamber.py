"""ChamberController conformance: the ESPEC driver against its simulator, the in-process
SimChamber, and whatever joins :mod:`.implementations`."""

from __future__ import annotations

import asyncio
import math

import pytest

from labrig.drivers.capabilities import ChamberController, InstrumentError
from labrig.orchestrator.instruments import Capability

from .implementations import Impl, ids, implementations
from .support import run_connected

IMPLS = implementations(Capability.chamber)
each = pytest.mark.parametrize("impl", IMPLS, ids=ids(IMPLS))
HOUR = 3600.0


def test_every_chamber_is_covered() -> None:
    assert {"espec", "sim-chamber"} <= set(ids(IMPLS))


@each
def test_the_air_reaches_and_holds_the_setpoint(impl: Impl) -> None:
    async def body(c: ChamberController) -> tuple[float, float, float]:
        assert isinstance(c, ChamberController) and c.name
        start = await c.read_temperature()
        await c.set_temperature(45.0)
        await asyncio.sleep(600.0)
        on_the_way = await c.read_temperature()
        await asyncio.sleep(3 * HOUR)
        return start, on_the_way, await c.read_temperature()

    start, on_the_way, settled = run_connected(impl, body)
    assert 15.0 < start < 30.0  # room temperature
    assert start < on_the_way < 45.0  # a first-order approach, no jump
    assert settled == pytest.approx(45.0, abs=0.5)


@each
def test_setpoints_it_cannot_hold_are_refused(impl: Impl) -> None:
    async def body(c: ChamberController) -> None:
        for bad in (math.nan, math.inf, 1000.0, -200.0):
            with pytest.raises(InstrumentError):
                await c.set_temperature(bad)

    run_connected(impl, body)


@each
def test_safe_state_is_idempotent_and_stops_conditioning(impl: Impl) -> None:
    async def body(c: ChamberController) -> float:
        await c.safe_state()  # idle
        await c.set_temperature(60.0)
        await asyncio.sleep(3 * HOUR)
        assert await c.read_temperature() == pytest.approx(60.0, abs=0.5)
        await c.safe_state()
        await c.safe_state()
        await asyncio.sleep(3 * HOUR)
        return await c.read_temperature()  # it still answers

    assert run_connected(impl, body) < 50.0  # drifting back to room temperature
