"""Mass-flow controller physics (pure): first-order flow response, noise, gas table.

The flow approaches the setpoint exponentially with time constant ``tau_s``; the state is
advanced analytically, so any jump of the clock is exact. Noise is added only to what is
reported (seeded, reproducible). Fault switch ``supply_lost``: the upstream gas is gone,
the flow decays to zero whatever the setpoint.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["GAS_TABLE", "MfcModel", "MfcParams"]

# Gas table numbers (the first entries of the vendor's list).
GAS_TABLE = {
    0: "Air",
    1: "Ar",
    2: "CH4",
    3: "CO",
    4: "CO2",
    5: "C2H6",
    6: "H2",
    7: "He",
    8: "N2",
    9: "N2O",
    10: "Ne",
    11: "O2",
}

STANDARD_K = 298.15  # 25 °C standard temperature
STANDARD_PSIA = 14.696


@dataclass(frozen=True, slots=True)
class MfcParams:
    full_scale_sccm: float = 200.0
    tau_s: float = 0.3
    noise_sccm: float = 0.05
    pressure_psia: float = 14.70
    temperature_C: float = 25.0
    seed: int = 0


@dataclass
class MfcModel:
    """One controller's state on the clock ``now``."""

    now: Callable[[], float]
    params: MfcParams = field(default_factory=MfcParams)
    gas_number: int = 8
    setpoint: float = 0.0
    flow: float = 0.0
    supply_lost: bool = False
    locked: bool = False
    registers: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._t = self.now()
        self._rng = random.Random(self.params.seed)
        self.registers.setdefault(122, 37)  # control point: mass flow

    @property
    def gas(self) -> str:
        return GAS_TABLE.get(self.gas_number, f"G{self.gas_number}")

    def advance(self) -> None:
        t = self.now()
        dt = t - self._t
        self._t = t
        if dt <= 0:
            return
        goal = 0.0 if self.supply_lost else self.setpoint
        self.flow = goal + (self.flow - goal) * math.exp(-dt / self.params.tau_s)

    def lose_supply(self, lost: bool = True) -> None:
        """Fault switch: the upstream gas is gone (True) or back (False), from now on."""
        self.advance()
        self.supply_lost = lost

    def set_setpoint(self, value: float) -> None:
        self.advance()
        self.setpoint = min(max(0.0, value), self.params.full_scale_sccm)

    def select_gas(self, number: int) -> bool:
        if number not in GAS_TABLE:
            return False
        self.advance()
        self.gas_number = number
        return True

    def reading(self) -> tuple[float, float, float, float, float, str, list[str]]:
        """pressure, temperature, volumetric flow, mass flow, setpoint, gas, status words."""
        self.advance()
        p = self.params
        mass = self.flow + (self._rng.gauss(0.0, p.noise_sccm) if self.flow > 0.01 else 0.0)
        if abs(mass) < 0.005:
            mass = 0.0
        vol = mass * (p.temperature_C + 273.15) / STANDARD_K * STANDARD_PSIA / p.pressure_psia
        status = []
        if mass > 1.28 * p.full_scale_sccm:
            status.append("MOV")
        if vol > 1.28 * p.full_scale_sccm:
            status.append("VOV")
        if self.locked:
            status.append("LCK")
        return p.pressure_psia, p.temperature_C, vol, mass, self.setpoint, self.gas, status
