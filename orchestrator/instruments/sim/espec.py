"""Simulated ESPEC-style climate chamber (ASCII lines, loopback TCP)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from labrig.drivers.capabilities import ChamberController

from ..hw.espec import EspecOptions
from ..registry import Handle, ServeOptions, SimRequest, SimStarted, SimulatedCell

__all__ = ["CellFollowsChamber", "serve_espec", "simulate_espec"]


class CellFollowsChamber:
    """The chamber's driver, with the position's simulated cell at the air temperature
    the chamber reports (each time it is read or set)."""

    def __init__(self, chamber: ChamberController, cell: SimulatedCell) -> None:
        self.chamber = chamber
        self.cell = cell

    @property
    def name(self) -> str:
        return self.chamber.name

    async def set_temperature(self, celsius: float) -> None:
        await self.chamber.set_temperature(celsius)
        await self.read_temperature()

    async def read_temperature(self) -> float:
        t = await self.chamber.read_temperature()
        self.cell.follow(t)
        return t

    async def safe_state(self) -> None:
        await self.chamber.safe_state()


@contextlib.asynccontextmanager
async def simulate_espec(req: SimRequest[EspecOptions]) -> AsyncIterator[SimStarted]:
    """A chamber at room temperature in standby; the position's cell follows its air."""
    from labrig.simulators.chamber import start_espec_sim

    cell = req.cell

    def couple(handle: Handle) -> Handle:
        chamber = handle.chamber_controller(0)
        coupled = CellFollowsChamber(chamber, cell)
        return Handle(handle.name, chamber=lambda _index: coupled)

    from labrig.simulators.chamber import ChamberParams

    o = req.options
    params = ChamberParams(min_C=o.min_C, max_C=o.max_C, lower_C=o.min_C, upper_C=o.max_C)
    sim = await start_espec_sim(params=params)
    async with sim:
        yield SimStarted(address=sim.address, model=sim, couple=couple)


@contextlib.asynccontextmanager
async def serve_espec(opts: ServeOptions) -> AsyncIterator[str]:
    """A chamber at room temperature in standby."""
    from labrig.simulators.chamber import start_espec_sim
    from labrig.simulators.clock import scaled_clock

    sim = await start_espec_sim(
        transport="pty" if opts.pty else "tcp",
        now=scaled_clock(opts.speed),
        host=opts.host,
        port=opts.port or 0,
    )
    async with sim:
        yield sim.address
