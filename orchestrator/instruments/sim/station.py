"""``--sim``: every instrument of a position replaced by its simulator.

A wire-level simulator is started on loopback (on the running loop, so it shares the
virtual clock) and the lab's driver is opened against it through the same hardware
opener as in the lab; an in-process simulator hands out its channels directly. Either
way the position's instruments act on one simulated cell.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from labrig.drivers.capabilities import InstrumentError
from labrig.protocols.models import CellSpec

from ..registry import Handle, InstrumentUse, Opened, OpenRequest, SimRequest, SimStarted
from .cell import SimCell

__all__ = ["SimSource", "SimulatedInstrument", "simulate"]


@dataclass(frozen=True)
class SimulatedInstrument:
    """A running simulator standing in for ``use``; :meth:`connect` opens its channels."""

    use: InstrumentUse
    started: SimStarted

    async def connect(self, stack: contextlib.AsyncExitStack) -> Handle:
        """The instrument's channels: through the lab's driver over the simulator's wire,
        or the in-process simulator's own. Calling it again is a host reconnecting."""
        use, started = self.use, self.started
        handle = started.handle
        if handle is None:
            if started.address is None or use.entry.open is None:
                raise InstrumentError(
                    f"{use.name}: the {use.entry.driver} simulator gave no address to open"
                )
            request = OpenRequest(use.name, started.address, use.channels, use.options, use.labels)
            handle = await stack.enter_async_context(use.entry.open(request))
        return started.couple(handle) if started.couple is not None else handle


@contextlib.asynccontextmanager
async def simulate(
    use: InstrumentUse,
    cell: SimCell,
    *,
    seed: int = 0,
    furnace_limit_C: float | None = None,
    command_log: str | None = None,
) -> AsyncIterator[SimulatedInstrument]:
    """Start the simulator of ``use`` for a position whose cell is ``cell``."""
    start = use.entry.simulate
    if start is None:
        raise InstrumentError(
            f"instrument {use.name!r}: driver {use.entry.driver!r} has no simulator yet"
        )
    request = SimRequest(
        use.name,
        use.channels,
        use.options,
        use.labels,
        cell,
        seed=seed,
        furnace_limit_C=furnace_limit_C,
        command_log=command_log,
    )
    async with start(request) as started:
        yield SimulatedInstrument(use, started)


class SimSource:
    """Simulated instruments for one position, sharing one simulated cell."""

    def __init__(
        self, cell: CellSpec | None = None, *, seed: int = 0, furnace_limit_C: float | None = None
    ) -> None:
        self.cell = SimCell(cell, seed=seed)
        self.seed = seed
        self.furnace_limit_C = furnace_limit_C

    async def open(self, stack: contextlib.AsyncExitStack, use: InstrumentUse) -> Opened:
        sim = await stack.enter_async_context(
            simulate(use, self.cell, seed=self.seed, furnace_limit_C=self.furnace_limit_C)
        )
        return Opened(await sim.connect(stack), sim.started.model)
