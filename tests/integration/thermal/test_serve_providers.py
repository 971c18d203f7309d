"""The thermal simulators' ``labrig sim serve`` factories start servers a driver reaches."""

from __future__ import annotations

import contextlib

from labrig.drivers.alicat import AlicatBus, AlicatFlow
from labrig.drivers.espec import EspecChamber
from labrig.drivers.eurotherm import EurothermFurnace
from labrig.drivers.transport import transport_from_url
from labrig.simulators.registry import ServeOptions, load_all
from tests.helpers import run_virtual_strict

PROVIDERS = (
    "labrig.simulators.furnace.serve",
    "labrig.simulators.gas.serve",
    "labrig.simulators.chamber.serve",
)


def test_factories_serve_reachable_instruments() -> None:
    async def main() -> tuple[float, float, float]:
        table = load_all(PROVIDERS)
        async with contextlib.AsyncExitStack() as stack:
            furnace_url = await table["eurotherm"](ServeOptions(), stack)
            gas_url = await table["alicat"](ServeOptions(pty=True), stack)
            chamber_url = await table["espec"](ServeOptions(speed=10.0), stack)
            assert furnace_url.startswith("tcp://127.0.0.1:")
            assert gas_url.startswith("serial:///dev/pts/")
            f = await stack.enter_async_context(EurothermFurnace.from_url(furnace_url))
            g = await stack.enter_async_context(transport_from_url(gas_url))
            c = await stack.enter_async_context(transport_from_url(chamber_url))
            return (
                await f.read_temperature(),
                (await AlicatFlow(AlicatBus(g), "B").read_frame()).setpoint,
                await EspecChamber(c).read_temperature(),
            )

    assert run_virtual_strict(main(), grace_s=0.002) == (25.0, 0.0, 22.0)
