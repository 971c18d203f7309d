"""Open the instruments a station position uses, through the instrument registry.

One walk serves every kind of position and both sources: each instrument the position
references is opened once (its entry's hardware opener, or ``--sim`` its simulator), then
each reference takes the channel it names from that instrument's :class:`Handle`. A
cell run gets :class:`RunBindings`; a furnace run a furnace and its gas lines.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from labrig.drivers.capabilities import (
    ChamberController,
    CyclerChannel,
    Furnace,
    GasFlow,
    ImpedanceChannel,
    InstrumentError,
)
from labrig.protocols.models import CellSpec

from ..instruments import Handle, InstrumentUse, Opened, OpenRequest, Source, entry
from ..station import Position, StationConfig
from .bindings import RunBindings

__all__ = [
    "HardwareSource",
    "PositionInstruments",
    "open_cell_bindings",
    "open_position",
    "source_for",
]


class HardwareSource:
    """The lab's instruments, each opened from its station entry's address."""

    async def open(self, stack: contextlib.AsyncExitStack, use: InstrumentUse) -> Opened:
        opener = use.entry.open
        if opener is None:
            raise InstrumentError(
                f"instrument {use.name!r}: driver {use.entry.driver!r} is a simulator only; "
                "run with --sim"
            )
        if use.address is None:
            raise InstrumentError(f"instrument {use.name!r} has no address")
        request = OpenRequest(use.name, use.address, use.channels, use.options, use.labels)
        return Opened(await stack.enter_async_context(opener(request)))


def source_for(
    *,
    sim: bool,
    cell: CellSpec | None = None,
    seed: int = 0,
    furnace_limit_C: float | None = None,
) -> Source:
    """The lab's hardware, or (``sim``) simulators sharing one simulated cell."""
    if not sim:
        return HardwareSource()
    from ..instruments.sim.station import SimSource  # the simulated station, when asked for

    return SimSource(cell, seed=seed, furnace_limit_C=furnace_limit_C)


@dataclass
class PositionInstruments:
    """The channels serving one position, by capability; ``gases`` by line name.

    ``models``: in a dry run, the simulator behind each instrument, by the station's
    name for it (for fault switches).
    """

    cycler: CyclerChannel | None = None
    impedance: ImpedanceChannel | None = None
    chamber: ChamberController | None = None
    furnace: Furnace | None = None
    gases: dict[str, GasFlow] = field(default_factory=dict)
    models: dict[str, object] = field(default_factory=dict)


def uses_of(station: StationConfig, position: Position) -> list[InstrumentUse]:
    """The instruments ``position`` references, each once, with the channels it uses."""
    labels: dict[str, dict[int, str]] = {}
    for _, label, ref in position.refs():
        name, index = station.resolve(ref)
        labels.setdefault(name, {})[index] = label
    uses = []
    for name, used in labels.items():
        inst = station.instruments[name]
        uses.append(
            InstrumentUse(entry(inst.driver), name, inst.address, inst.channels, inst.options, used)
        )
    return uses


@contextlib.asynccontextmanager
async def open_position(
    station: StationConfig, position: Position, source: Source
) -> AsyncIterator[PositionInstruments]:
    """Every instrument ``position`` references, open until the block exits."""
    async with contextlib.AsyncExitStack() as stack:
        handles: dict[str, Handle] = {}
        models: dict[str, object] = {}
        for use in uses_of(station, position):
            opened = await source.open(stack, use)
            handles[use.name] = opened.handle
            if opened.model is not None:
                models[use.name] = opened.model

        def at(ref: str) -> tuple[Handle, int]:
            name, index = station.resolve(ref)
            return handles[name], index

        out = PositionInstruments(models=models)
        if position.cycler is not None:
            handle, index = at(position.cycler)
            out.cycler = handle.cycler_channel(index)
        if position.impedance is not None:
            handle, index = at(position.impedance)
            out.impedance = handle.impedance_channel(index)
        if position.chamber is not None:
            handle, index = at(position.chamber)
            out.chamber = handle.chamber_controller(index)
        if position.furnace is not None:
            handle, index = at(position.furnace)
            out.furnace = handle.furnace_controller(index)
        for line, ref in position.gas.items():
            handle, index = at(ref)
            out.gases[line] = handle.gas_line(index)
        yield out


@contextlib.asynccontextmanager
async def open_cell_bindings(
    station: StationConfig,
    position: Position,
    cell: CellSpec | None,
    *,
    sim: bool,
    seed: int,
    wrap: Callable[[Source], Source] | None = None,
) -> AsyncIterator[RunBindings]:
    """The instruments serving a cell at ``position`` (simulated when ``sim``).

    ``wrap`` may stand between the run and its source (the scheduler opens instruments
    that positions share once, for all their runs)."""
    if position.cycler is None:
        raise InstrumentError(f"position {position.name!r} has no cycler channel")
    source = source_for(sim=sim, cell=cell, seed=seed)
    if wrap is not None:
        source = wrap(source)
    async with open_position(station, position, source) as inst:
        assert inst.cycler is not None
        yield RunBindings(cycler=inst.cycler, impedance=inst.impedance, chamber=inst.chamber)
