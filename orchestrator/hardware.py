"""Open a station's real instruments for one position (the lab, not a dry run).

Each driver name of :data:`orchestrator.station.DRIVERS` maps to code here that builds the
driver from the instrument's address; nothing is imported from a name in the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from drivers.capabilities import InstrumentError

from .executor import RunBindings
from .station import Position, StationConfig

__all__ = ["open_hardware_bindings"]


async def _cycler(stack: contextlib.AsyncExitStack, station: StationConfig, ref: str) -> Any:
    name, index = station.resolve(ref)
    inst = station.instruments[name]
    if inst.address is None:
        raise InstrumentError(f"instrument {name!r} has no address")
    if inst.driver == "maccor":
        from drivers.maccor import MaccorCycler

        cycler = await stack.enter_async_context(
            MaccorCycler.from_url(inst.address, channels=[index], name=name, **inst.options)
        )
        return cycler.channel(index)
    raise InstrumentError(f"driver {inst.driver!r} cannot serve as a cycler channel here")


@contextlib.asynccontextmanager
async def open_hardware_bindings(
    station: StationConfig, position: Position
) -> AsyncIterator[RunBindings]:
    if position.cycler is None:
        raise InstrumentError(f"position {position.name!r} has no cycler channel")
    async with contextlib.AsyncExitStack() as stack:
        cycler = await _cycler(stack, station, position.cycler)
        if position.impedance is not None:
            raise InstrumentError(
                f"position {position.name!r}: impedance channels on hardware need the "
                "PalmSens driver, which this version does not wire in yet"
            )
        if position.chamber is not None:
            raise InstrumentError(
                f"position {position.name!r}: chamber control on hardware is not wired in yet"
            )
        yield RunBindings(cycler=cycler)
