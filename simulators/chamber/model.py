"""Climate chamber physics (pure): first-order approach with a stable band.

Conditioning (power on, mode CONSTANT) drives the air temperature towards the setpoint
with time constant ``tau_s``; once within ``band_K`` it stays there, wandering by a
seeded, bounded amount as a real chamber's controller hunts. Standby or off: the chamber
drifts to room temperature more slowly. Integrated analytically over any time jump.
Fault switch ``refrigeration_failed``: the chamber can no longer cool below room.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ChamberModel", "ChamberParams"]


@dataclass(frozen=True, slots=True)
class ChamberParams:
    tau_s: float = 600.0
    idle_tau_s: float = 3600.0
    room_C: float = 22.0
    band_K: float = 0.3
    upper_C: float = 100.0
    lower_C: float = -40.0
    min_C: float = -40.0
    max_C: float = 100.0
    seed: int = 0


@dataclass
class ChamberModel:
    now: Callable[[], float]
    params: ChamberParams = field(default_factory=ChamberParams)
    setpoint_C: float = 25.0
    power: bool = True
    mode: str = "STANDBY"
    refrigeration_failed: bool = False

    def __post_init__(self) -> None:
        p = self.params
        self.temperature_C = p.room_C
        self.upper_C = p.upper_C
        self.lower_C = p.lower_C
        self._t = self.now()
        self._rng = random.Random(p.seed)

    @property
    def conditioning(self) -> bool:
        return self.power and self.mode == "CONSTANT"

    def advance(self) -> None:
        t = self.now()
        dt = t - self._t
        self._t = t
        if dt <= 0:
            return
        p = self.params
        if self.conditioning:
            goal, tau = self.setpoint_C, p.tau_s
            if self.refrigeration_failed:
                goal = max(goal, p.room_C)
        else:
            goal, tau = p.room_C, p.idle_tau_s
        self.temperature_C = goal + (self.temperature_C - goal) * math.exp(-dt / tau)

    def fail_refrigeration(self, failed: bool = True) -> None:
        """Fault switch, from now on."""
        self.advance()
        self.refrigeration_failed = failed

    def measured(self) -> float:
        """What the chamber's sensor shows now (within the band: a bounded wander)."""
        self.advance()
        t = self.temperature_C
        if self.conditioning and abs(t - self.setpoint_C) < self.params.band_K:
            t = self.setpoint_C + self._rng.uniform(-0.5, 0.5) * self.params.band_K
        return t

    def alarms(self) -> int:
        t = self.measured()
        return int(t > self.upper_C) + int(t < self.lower_C)
