"""GasFlow conformance: the Alicat driver against its simulated bus, and whatever joins
:mod:`.implementations`."""

from __future__ import annotations

import asyncio
import math

import pytest

from labrig.drivers.capabilities import GasFlow, InstrumentError
from labrig.orchestrator.instruments import Capability

from .implementations import Impl, ids, implementations
from .support import run_connected

IMPLS = implementations(Capability.gas)
each = pytest.mark.parametrize("impl", IMPLS, ids=ids(IMPLS))


def test_every_gas_flow_is_covered() -> None:
    assert {"alicat"} <= set(ids(IMPLS))


@each
def test_flow_follows_the_setpoint(impl: Impl) -> None:
    async def body(g: GasFlow) -> list[float]:
        assert isinstance(g, GasFlow) and g.name
        flows = [await g.read_flow()]
        for sccm in (118.5, 31.5, 0.0):
            await g.set_flow(sccm)
            await asyncio.sleep(30.0)
            flows.append(await g.read_flow())
        return flows

    idle, high, low, off = run_connected(impl, body)
    assert abs(idle) < 1.0
    assert high == pytest.approx(118.5, rel=0.02, abs=0.5)
    assert low == pytest.approx(31.5, rel=0.02, abs=0.5)
    assert abs(off) < 0.5


@each
def test_bad_setpoints_and_unknown_gases_are_refused(impl: Impl) -> None:
    async def body(g: GasFlow) -> None:
        for bad in (-1.0, math.nan, math.inf):
            with pytest.raises(InstrumentError):
                await g.set_flow(bad)
        with pytest.raises(InstrumentError):
            await g.select_gas("unobtainium")
        await g.select_gas("O2")
        await g.select_gas("N2")

    run_connected(impl, body)


@each
def test_safe_state_is_idempotent_and_keeps_a_purge_flowing(impl: Impl) -> None:
    async def body(g: GasFlow) -> float:
        await g.set_flow(50.0)
        await asyncio.sleep(30.0)
        await g.safe_state()
        await g.safe_state()
        await asyncio.sleep(30.0)
        return await g.read_flow()

    assert run_connected(impl, body) == pytest.approx(50.0, rel=0.02, abs=0.5)
