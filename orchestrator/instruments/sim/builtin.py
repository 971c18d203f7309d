"""The in-process simulators as registry entries: ``sim``, ``sim-eis``, ``sim-chamber``.

No wire and no driver: capability adapters over the position's simulated cell
(:mod:`.inprocess`). The quickest dry run of all.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pydantic import Field, model_validator

from labrig.drivers.capabilities import CyclerChannel, ImpedanceChannel

from ..registry import (
    Handle,
    InstrumentLimits,
    InstrumentOptions,
    NoOptions,
    SimRequest,
    SimStarted,
)

__all__ = [
    "SimChamberOptions",
    "sim_chamber_limits",
    "simulate_chamber",
    "simulate_cycler",
    "simulate_eis",
]


class SimChamberOptions(InstrumentOptions):
    tau_s: float = Field(600.0, gt=0, description="time constant of the air, s")
    room_C: float = Field(25.0, ge=-40, le=60, description="where the air drifts in standby")
    min_C: float = Field(-40.0, description="lowest setpoint the chamber holds")
    max_C: float = Field(100.0, description="highest setpoint the chamber holds")

    @model_validator(mode="after")
    def _range(self) -> SimChamberOptions:
        if not self.min_C < self.max_C:
            raise ValueError(f"min_C {self.min_C} must be below max_C {self.max_C}")
        return self


def sim_chamber_limits(o: SimChamberOptions) -> InstrumentLimits:
    return InstrumentLimits(
        model="simulated chamber", settings={"temperature_C": "options.min_C / max_C"},
        temperature_C=(o.min_C, o.max_C),
    )  # fmt: skip


@contextlib.asynccontextmanager
async def simulate_cycler(req: SimRequest[NoOptions]) -> AsyncIterator[SimStarted]:
    """Cycler channels on the position's cell; each call makes a new channel object over
    the same engine (as a host reconnecting to a tester that kept running)."""
    from .cell import engine_of
    from .inprocess import SimCyclerChannel

    cell, name = req.cell, req.name

    def channel(index: int) -> CyclerChannel:
        return SimCyclerChannel(f"{name}/{index}", engine_of(cell))

    yield SimStarted(handle=Handle(name, cycler=channel), model=cell)


@contextlib.asynccontextmanager
async def simulate_eis(req: SimRequest[NoOptions]) -> AsyncIterator[SimStarted]:
    """An impedance channel measuring the position's cell."""
    from .cell import engine_of
    from .inprocess import SimImpedanceChannel

    cell, name = req.cell, req.name

    def channel(index: int) -> ImpedanceChannel:
        return SimImpedanceChannel(f"{name}/{index}", engine_of(cell))

    yield SimStarted(handle=Handle(name, impedance=channel), model=cell)


@contextlib.asynccontextmanager
async def simulate_chamber(req: SimRequest[SimChamberOptions]) -> AsyncIterator[SimStarted]:
    """A chamber setting the temperature of the position's cell."""
    from .inprocess import SimChamber

    o = req.options
    chamber = SimChamber(
        req.name, [req.cell], tau_s=o.tau_s, room_C=o.room_C, min_C=o.min_C, max_C=o.max_C
    )
    yield SimStarted(handle=Handle(req.name, chamber=lambda _index: chamber), model=chamber)
