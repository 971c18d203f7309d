"""Start a simulated BioLogic instrument for a driver: the library object and an address.

``async with simulate_biologic(engines, model="VMP-300") as sim:`` gives ``sim.library``
(pass it to the driver where the lab passes the loaded DLL) and ``sim.address``; the
channels measure the given engines' cells on the running loop's clock (virtual in dry
runs). Faults are methods of ``sim.library``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labrig.simulators.cell.params import CellParams
from labrig.simulators.command_log import CommandLog
from labrig.simulators.engine import ChannelEngine

from ._library import SimEClib, SimInstrument

__all__ = ["BioLogicSim", "simulate_biologic"]


@dataclass(frozen=True, slots=True)
class BioLogicSim:
    library: SimEClib
    address: str
    instrument: SimInstrument
    model: str


@contextlib.asynccontextmanager
async def simulate_biologic(
    engines: Sequence[ChannelEngine] | int = 1,
    *,
    model: str = "VMP-300",
    address: str = "USB0",
    phase_unit: str = "rad",
    firmware: int = 5,
    library: SimEClib | None = None,
    now: Callable[[], float] | None = None,
    cell: CellParams | str | None = None,
    seed: int = 0,
    command_log: str | Path | None = None,
) -> AsyncIterator[BioLogicSim]:
    """A simulated instrument whose channels measure ``engines`` (or that many new cells).

    Several instruments can share one ``library`` (as one DLL serves several units).
    ``command_log``: a file where a new library logs every call with its time, channel
    and answer code (:mod:`simulators.command_log`).
    """
    clock = now if now is not None else asyncio.get_running_loop().time
    if isinstance(engines, int):
        engines = [ChannelEngine(cell, seed=seed + k, now=clock()) for k in range(engines)]
    log = CommandLog(command_log) if command_log is not None and library is None else None
    lib = library if library is not None else SimEClib(clock, command_log=log)
    inst = lib.add_instrument(address, model, engines, phase_unit=phase_unit, firmware=firmware)
    try:
        yield BioLogicSim(lib, address, inst, model)
    finally:
        lib.release()
        lib.instruments.pop(address, None)
        if log is not None:
            lib.command_log = None
            log.close()
