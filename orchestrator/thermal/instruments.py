"""Open a furnace position's controller and mass-flow controllers for one run.

On hardware the drivers are built from the station's addresses (``transport_from_url``).
With ``sim`` the simulators are started in this process, on the running loop (so a
virtual clock drives their physics too), served on loopback TCP, and the same real
drivers talk to them over it: a dry run exercises the wire protocols end to end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.alicat import GAS_NUMBERS, AlicatBus, AlicatFlow
from labrig.drivers.capabilities import InstrumentError
from labrig.drivers.eurotherm import EurothermFurnace, settings_2400, settings_3200
from labrig.drivers.transport import transport_from_url

from ..station import Position, StationConfig

__all__ = ["ThermalInstruments", "open_thermal_instruments"]

#: The independent limit of a simulated furnace sits this far above limits.furnace_max_C.
SIM_LIMIT_MARGIN_K = 25.0


@dataclass
class ThermalInstruments:
    """The drivers of one furnace position; ``sims`` holds the simulators in a dry run
    (``"furnace"``: EurothermSimulator, ``"gas"``: AlicatSimulator) for fault switches."""

    furnace: EurothermFurnace
    gases: dict[str, AlicatFlow]
    gas_names: dict[str, str | None]
    sims: dict[str, Any] = field(default_factory=dict)


def _known_gas(name: str) -> str | None:
    for known in GAS_NUMBERS:
        if known.lower() == name.lower():
            return str(known)
    return None


def _unit_letter(station: StationConfig, ref: str) -> tuple[str, str]:
    name, index = station.resolve(ref)
    inst = station.instruments[name]
    if inst.driver != "alicat":
        raise InstrumentError(f"gas line {ref!r}: instrument {name!r} is not an alicat")
    units = str(inst.options.get("units", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    if index >= len(units):
        raise InstrumentError(f"gas line {ref!r}: options.units {units!r} has no channel {index}")
    return name, units[index]


def _furnace_settings(options: dict[str, Any]) -> Any:
    series = str(options.get("series", "2400"))
    if series == "2400":
        return settings_2400()
    if series == "3200":
        return settings_3200()
    raise InstrumentError(f"eurotherm options.series must be 2400 or 3200, got {series!r}")


@contextlib.asynccontextmanager
async def open_thermal_instruments(
    station: StationConfig,
    position: Position,
    *,
    sim: bool,
    seed: int = 0,
    furnace_max_C: float | None = None,
) -> AsyncIterator[ThermalInstruments]:
    """The furnace and gas lines of ``position``, open for the duration of the block."""
    if position.furnace is None:
        raise InstrumentError(f"position {position.name!r} has no furnace")
    fname, _ = station.resolve(position.furnace)
    finst = station.instruments[fname]
    if finst.driver != "eurotherm":
        raise InstrumentError(f"furnace {fname!r}: driver {finst.driver!r} is not a eurotherm")
    settings = _furnace_settings(finst.options)
    slave = int(finst.options.get("slave", 1))
    lines: dict[str, tuple[str, str]] = {
        line: _unit_letter(station, ref) for line, ref in position.gas.items()
    }
    buses = sorted({bus for bus, _ in lines.values()})
    async with contextlib.AsyncExitStack() as stack:
        sims: dict[str, Any] = {}
        addresses: dict[str, str] = {}
        if sim:
            from labrig.simulators.furnace import start_eurotherm_sim
            from labrig.simulators.gas import MfcParams, start_alicat_sim

            limit = None if furnace_max_C is None else furnace_max_C + SIM_LIMIT_MARGIN_K
            fsim = await stack.enter_async_context(
                await start_eurotherm_sim(series=settings.series, address=slave, limit_C=limit)
            )
            sims["furnace"] = fsim
            addresses[fname] = fsim.address
            for bus in buses:
                units = {
                    unit: _known_gas(line) or "N2" for line, (b, unit) in lines.items() if b == bus
                }
                gsim = await stack.enter_async_context(
                    await start_alicat_sim(units=units, params=MfcParams(seed=seed))
                )
                sims["gas" if bus == buses[0] else f"gas:{bus}"] = gsim
                addresses[bus] = gsim.address
        else:
            for name in (fname, *buses):
                address = station.instruments[name].address
                if address is None:
                    raise InstrumentError(f"instrument {name!r} has no address")
                addresses[name] = address
        furnace = await stack.enter_async_context(
            EurothermFurnace.from_url(addresses[fname], slave, settings, name=fname)
        )
        gases: dict[str, AlicatFlow] = {}
        bus_objs: dict[str, AlicatBus] = {}
        for bus in buses:
            link = await stack.enter_async_context(transport_from_url(addresses[bus]))
            bus_objs[bus] = AlicatBus(link)
        for line, (bus, unit) in lines.items():
            fs = station.instruments[bus].options.get("full_scale_sccm")
            gases[line] = AlicatFlow(
                bus_objs[bus],
                unit,
                name=f"{bus}/{unit} ({line})",
                full_scale_sccm=float(fs) if fs is not None else None,
            )
        yield ThermalInstruments(
            furnace=furnace,
            gases=gases,
            gas_names={line: _known_gas(line) for line in lines},
            sims=sims,
        )
