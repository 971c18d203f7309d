"""One simulated cell per position, shared by every instrument that touches it."""

from __future__ import annotations

import asyncio
from typing import Any

from labrig.protocols.models import CellSpec
from labrig.simulators.cell import CellParams, preset
from labrig.simulators.engine import ChannelEngine

from ..registry import SimulatedCell

__all__ = ["SimCell", "engine_of", "sim_cell_params"]


def sim_cell_params(cell: CellSpec | None) -> CellParams:
    """The simulated cell for a protocol's cell spec: its preset, with its CAM mass."""
    name = cell.preset if cell is not None and cell.preset else None
    if name is None and cell is not None and (cell.counter_electrode or "").upper() == "LTO":
        name = "ncm85_lto"
    overrides: dict[str, Any] = {}
    if cell is not None:
        m = cell.cam_mass_mg_value()
        if m is not None:
            overrides["cam_mass_g"] = m * 1e-3
    return preset(name, **overrides)


class SimCell:
    """The simulated cell of one position (made on first use: a furnace position has
    none). Its cycler channel drives it, its impedance channel measures it and its
    chamber sets its temperature, as in the lab: during an EIS checkpoint the cycler
    channel is at open circuit and the potentiostat measures the same cell."""

    #: the cell follows the chamber's air in steps of at least this much (re-planning a
    #: running block costs a re-simulation)
    FOLLOW_K = 0.1

    def __init__(self, spec: CellSpec | None = None, *, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed
        self._engine: ChannelEngine | None = None
        self._pushed: float | None = None

    @property
    def engine(self) -> ChannelEngine:
        if self._engine is None:
            now = asyncio.get_running_loop().time()
            self._engine = ChannelEngine(sim_cell_params(self.spec), seed=self.seed, now=now)
        return self._engine

    def follow(self, ambient_C: float) -> None:
        """The air around the cell is at ``ambient_C`` now."""
        if self._pushed is not None and abs(ambient_C - self._pushed) < self.FOLLOW_K:
            return
        self._pushed = ambient_C
        self.engine.set_temperature(ambient_C, asyncio.get_running_loop().time())


def engine_of(cell: SimulatedCell) -> ChannelEngine:
    """The engine of a position's simulated cell (the simulated station makes SimCells)."""
    if not isinstance(cell, SimCell):
        raise TypeError(f"a simulated cell of this station is a SimCell, not {type(cell)}")
    return cell.engine
