"""Open a furnace position's controller and mass-flow controllers for one run.

Opened through the instrument registry (:mod:`orchestrator.instruments`): on hardware
each driver is built from the station's address; with ``sim`` each simulator is started
in this process, on the running loop (so a virtual clock drives its physics too), and the
same drivers talk to it over loopback: a dry run exercises the wire protocols end to end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.alicat import GAS_NUMBERS
from labrig.drivers.capabilities import Furnace, GasFlow, InstrumentError

from ..run.instruments import open_position, source_for
from ..station import Position, StationConfig

__all__ = ["SIM_LIMIT_MARGIN_K", "ThermalInstruments", "open_thermal_instruments"]

#: The independent limit of a simulated furnace sits this far above limits.furnace_max_C.
SIM_LIMIT_MARGIN_K = 25.0


@dataclass
class ThermalInstruments:
    """The furnace and gas lines of one furnace position, as capabilities.

    ``gas_names``: the gas each line carries when its name is one (``N2``), else None.
    ``sims`` holds the simulators in a dry run (``"furnace"``, ``"gas"``, and
    ``"gas:<bus>"`` for further buses) for fault switches.
    """

    furnace: Furnace
    gases: dict[str, GasFlow]
    gas_names: dict[str, str | None]
    sims: dict[str, Any] = field(default_factory=dict)


def _known_gas(name: str) -> str | None:
    for known in GAS_NUMBERS:
        if known.lower() == name.lower():
            return str(known)
    return None


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
    limit = None if furnace_max_C is None else furnace_max_C + SIM_LIMIT_MARGIN_K
    source = source_for(sim=sim, seed=seed, furnace_limit_C=limit)
    async with open_position(station, position, source) as inst:
        assert inst.furnace is not None
        sims: dict[str, Any] = {}
        fname, _ = station.resolve(position.furnace)
        if fname in inst.models:
            sims["furnace"] = inst.models[fname]
        buses = sorted({station.resolve(ref)[0] for ref in position.gas.values()})
        for i, bus in enumerate(buses):
            if bus in inst.models:
                sims["gas" if i == 0 else f"gas:{bus}"] = inst.models[bus]
        yield ThermalInstruments(
            furnace=inst.furnace,
            gases=inst.gases,
            gas_names={line: _known_gas(line) for line in position.gas},
            sims=sims,
        )
