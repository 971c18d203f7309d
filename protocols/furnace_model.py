"""What a furnace can do, for estimates and checks before a run (pure).

One lumped thermal mass C heated by at most P and losing L·(T − T_ambient) to the room:

    heating at most   dT/dt = (P − L (T − T_a)) / C
    natural cooling   dT/dt = −(T − T_a) / τ,   τ = C / L

so a programmed rate is followed where the furnace can, and the furnace's own rate limits
it elsewhere: natural cooling falls below 10 K/min once T − T_a < 10 K/min · τ. The
defaults are those of the simulated tube furnace (2.5 kW, 5.5 kJ/K, 1.4 W/K: τ ≈ 65 min,
natural cooling 5.7 K/min at 400 °C, 1.1 K/min at 100 °C); a lab enters its own furnace's
figures (``FurnaceModel(...)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FurnaceModel", "segment_seconds"]


@dataclass(frozen=True)
class FurnaceModel:
    """Heat capacity, heater power and heat loss of a furnace (the simulated one's)."""

    heat_capacity_J_per_K: float = 5500.0
    heater_max_W: float = 2500.0
    loss_W_per_K: float = 1.4
    ambient_C: float = 25.0

    @property
    def tau_s(self) -> float:
        return self.heat_capacity_J_per_K / self.loss_W_per_K

    def max_heating_K_per_s(self, t_C: float) -> float:
        return max(
            (self.heater_max_W - self.loss_W_per_K * (t_C - self.ambient_C))
            / self.heat_capacity_J_per_K,
            0.0,
        )

    def natural_cooling_K_per_s(self, t_C: float) -> float:
        return max(t_C - self.ambient_C, 0.0) / self.tau_s

    def reach(self, t_C: float, heating: bool) -> float:
        """The fastest rate (K/s) the furnace manages at ``t_C``, up or down."""
        return self.max_heating_K_per_s(t_C) if heating else self.natural_cooling_K_per_s(t_C)


def segment_seconds(
    model: FurnaceModel, start_C: float, end_C: float, rate_K_per_s: float | None
) -> tuple[float, float | None]:
    """Time the sample takes from ``start_C`` to ``end_C`` at the programmed rate where the
    furnace can follow it (``None``: as fast as it can), and the temperature from which
    the programmed rate is beyond reach (``None`` if it is reachable throughout).

    ``math.inf`` when the furnace never gets there (cooling to the room itself).
    """
    if end_C == start_C:
        return 0.0, None
    heating = end_C > start_C
    if not heating and end_C <= model.ambient_C:
        return math.inf, start_C
    if heating and model.max_heating_K_per_s(end_C) <= 0:
        return math.inf, end_C
    if not heating and rate_K_per_s is None:  # natural cooling: closed form
        a = model.ambient_C
        return model.tau_s * math.log((start_C - a) / (end_C - a)), None
    n = max(int(abs(end_C - start_C) / 0.5), 200)
    step = (end_C - start_C) / n
    total = 0.0
    beyond: float | None = None
    for k in range(n):
        t = start_C + (k + 0.5) * step
        reach = model.reach(t, heating)
        rate = reach if rate_K_per_s is None else min(rate_K_per_s, reach)
        if rate_K_per_s is not None and reach < rate_K_per_s and beyond is None:
            beyond = start_C + k * step
        total += abs(step) / rate
    return total, beyond
