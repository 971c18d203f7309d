"""Simulated stations through the real drivers: wire-level simulators in process.

For each instrument of a station whose driver has a wire-level simulator, ``--sim``
starts that simulator on loopback (on the same event loop, so it shares the virtual
clock) and opens the lab's driver against it. The run therefore exercises exactly the
driver code that talks to the hardware. One simulated cell per position: the cycler
channel's engine is also what the impedance channel measures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from labrig.drivers.capabilities import CyclerChannel, ImpedanceChannel, InstrumentError
from labrig.protocols.models import CellSpec
from labrig.simulators.engine import ChannelEngine

from .run.bindings import RunBindings
from .simstation import SimChamber, SimImpedanceChannel, sim_cell_params
from .station import InstrumentConfig, Position, StationConfig

__all__ = ["open_wire_sim_bindings"]


@contextlib.asynccontextmanager
async def _maccor(
    stack: contextlib.AsyncExitStack, engine: ChannelEngine, inst: InstrumentConfig, index: int
) -> AsyncIterator[CyclerChannel]:
    from labrig.drivers.maccor import MaccorCycler
    from labrig.simulators.maccor import serve_maccor

    # The tester has as many channels as the station says; only ours has the run's cell.
    engines = [
        engine if i == index else ChannelEngine(None, now=asyncio.get_running_loop().time())
        for i in range(inst.channels)
    ]
    srv = await stack.enter_async_context(serve_maccor(engines))
    cycler = await stack.enter_async_context(MaccorCycler.from_url(srv.url, channels=[index]))
    yield cycler.channel(index)


async def _palmsens(
    stack: contextlib.AsyncExitStack, engine: ChannelEngine, name: str
) -> ImpedanceChannel:
    """A MethodSCRIPT simulator measuring the run's cell, reached through the driver.

    Served on loopback TCP here (the lab's unit is on serial): a dry run on the virtual
    clock then needs no pseudo-terminal timing slack.
    """
    from labrig.drivers.palmsens import PalmSensChannel
    from labrig.simulators.palmsens import serve_palmsens

    srv = await stack.enter_async_context(serve_palmsens(engine, pty=False))
    channel = PalmSensChannel.from_url(srv.url, name=name)
    await stack.enter_async_context(channel)
    return channel


@contextlib.asynccontextmanager
async def open_wire_sim_bindings(
    station: StationConfig, position: Position, cell: CellSpec | None, *, seed: int
) -> AsyncIterator[RunBindings]:
    if position.cycler is None:
        raise InstrumentError(f"position {position.name!r} has no cycler channel")
    inst_name, index = station.resolve(position.cycler)
    inst = station.instruments[inst_name]
    loop = asyncio.get_running_loop()
    engine = ChannelEngine(sim_cell_params(cell), seed=seed, now=loop.time())
    async with contextlib.AsyncExitStack() as stack:
        cycler: Any
        if inst.driver == "maccor":
            cycler = await stack.enter_async_context(_maccor(stack, engine, inst, index))
        else:
            raise InstrumentError(f"no wire-level simulator for cycler driver {inst.driver!r} yet")
        impedance: ImpedanceChannel | None = None
        if position.impedance is not None:
            imp_name, _ = station.resolve(position.impedance)
            imp_driver = station.instruments[imp_name].driver
            if imp_driver == "palmsens":
                impedance = await _palmsens(stack, engine, position.impedance)
            elif imp_driver == "sim-eis":
                impedance = SimImpedanceChannel(position.impedance, engine)
            else:
                raise InstrumentError(f"no simulator for impedance driver {imp_driver!r}")
        chamber = SimChamber(position.chamber, [engine]) if position.chamber else None
        yield RunBindings(cycler=cycler, impedance=impedance, chamber=chamber)
