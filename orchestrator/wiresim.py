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

from drivers.capabilities import CyclerChannel, ImpedanceChannel, InstrumentError
from protocols.models import CellSpec
from simulators.engine import ChannelEngine

from .executor import RunBindings
from .simstation import SimChamber, SimImpedanceChannel, sim_cell_params
from .station import InstrumentConfig, Position, StationConfig

__all__ = ["WIRE_SIM_STATION", "open_wire_sim_bindings"]

WIRE_SIM_STATION = StationConfig(
    name="sim-wire",
    instruments={
        "cycler": InstrumentConfig(driver="maccor", address="tcp://127.0.0.1:57570", channels=8),
        "eis": InstrumentConfig(driver="sim-eis", channels=8),
        "chamber": InstrumentConfig(driver="sim-chamber"),
    },
    positions=[
        Position(name=f"ch{i}", cycler=f"cycler/{i}", impedance=f"eis/{i}", chamber="chamber")
        for i in range(8)
    ],
)


@contextlib.asynccontextmanager
async def _maccor(
    stack: contextlib.AsyncExitStack, engine: ChannelEngine, inst: InstrumentConfig, index: int
) -> AsyncIterator[CyclerChannel]:
    from drivers.maccor import MaccorCycler
    from simulators.maccor import serve_maccor

    # The tester has as many channels as the station says; only ours has the run's cell.
    engines = [
        engine if i == index else ChannelEngine(None, now=asyncio.get_running_loop().time())
        for i in range(inst.channels)
    ]
    srv = await stack.enter_async_context(serve_maccor(engines))
    cycler = await stack.enter_async_context(MaccorCycler.from_url(srv.url, channels=[index]))
    yield cycler.channel(index)


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
            if imp_driver not in ("sim-eis", "palmsens"):
                raise InstrumentError(f"no simulator for impedance driver {imp_driver!r}")
            impedance = SimImpedanceChannel(position.impedance, engine)
        chamber = SimChamber(position.chamber, [engine]) if position.chamber else None
        yield RunBindings(cycler=cycler, impedance=impedance, chamber=chamber)
