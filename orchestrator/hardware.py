"""Open a station's real instruments for one position (the lab, not a dry run).

Each driver name of :data:`orchestrator.station.DRIVERS` maps to code here that builds the
driver from the instrument's address; nothing is imported from a name in the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from labrig.drivers.capabilities import InstrumentError

from .run.bindings import RunBindings
from .station import Position, StationConfig

__all__ = ["open_hardware_bindings"]


async def _cycler(stack: contextlib.AsyncExitStack, station: StationConfig, ref: str) -> Any:
    name, index = station.resolve(ref)
    inst = station.instruments[name]
    if inst.address is None:
        raise InstrumentError(f"instrument {name!r} has no address")
    if inst.driver == "maccor":
        from labrig.drivers.maccor import MaccorCycler

        # one (4,1) status poll per tester for all its runs (drivers.maccor.board)
        options = {"shared_status": True, **inst.options}
        cycler = await stack.enter_async_context(
            MaccorCycler.from_url(inst.address, channels=[index], name=name, **options)
        )
        return cycler.channel(index)
    if inst.driver == "keithley2450":
        from labrig.drivers.keithley import K2450Channel

        return await stack.enter_async_context(
            K2450Channel.from_url(inst.address, name=name, **inst.options)
        )
    raise InstrumentError(f"driver {inst.driver!r} cannot serve as a cycler channel here")


async def _impedance(stack: contextlib.AsyncExitStack, station: StationConfig, ref: str) -> Any:
    name, _index = station.resolve(ref)
    inst = station.instruments[name]
    if inst.address is None:
        raise InstrumentError(f"instrument {name!r} has no address")
    if inst.driver == "palmsens":
        from labrig.drivers.palmsens import PalmSensChannel

        return await stack.enter_async_context(
            PalmSensChannel.from_url(inst.address, name=name, **inst.options)
        )
    raise InstrumentError(f"driver {inst.driver!r} cannot measure impedance here")


async def _chamber(stack: contextlib.AsyncExitStack, station: StationConfig, ref: str) -> Any:
    name, _index = station.resolve(ref)
    inst = station.instruments[name]
    if inst.address is None:
        raise InstrumentError(f"instrument {name!r} has no address")
    if inst.driver == "espec":
        from labrig.drivers.espec import EspecChamber
        from labrig.drivers.transport import transport_from_url

        transport = await stack.enter_async_context(transport_from_url(inst.address))
        return EspecChamber(transport, **inst.options)
    raise InstrumentError(f"driver {inst.driver!r} is not a climate chamber")


@contextlib.asynccontextmanager
async def open_hardware_bindings(
    station: StationConfig, position: Position
) -> AsyncIterator[RunBindings]:
    if position.cycler is None:
        raise InstrumentError(f"position {position.name!r} has no cycler channel")
    async with contextlib.AsyncExitStack() as stack:
        cycler = await _cycler(stack, station, position.cycler)
        impedance = None
        if position.impedance is not None:
            impedance = await _impedance(stack, station, position.impedance)
        chamber = None
        if position.chamber is not None:
            chamber = await _chamber(stack, station, position.chamber)
        yield RunBindings(cycler=cycler, impedance=impedance, chamber=chamber)
