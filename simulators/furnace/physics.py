"""Tube-furnace thermal physics and an independent over-temperature limit (pure).

One lumped thermal mass heated by an element of limited power and losing heat linearly to
ambient; the heater acts after a dead time (element and tube walls), and each
thermocouple sees the furnace through its own first-order lag. Over a fixed step the
heater power is constant, so the furnace temperature is integrated exactly (exponential
approach to the equilibrium the power sets); a step of ~1 s is far below the furnace's
time constant (~1 h), so the discretisation is invisible in the trace.

The over-temperature limit is a separate instrument with its own thermocouple: it cuts
the heater when that thermocouple exceeds its limit and stays tripped (latched) until
reset by hand (:meth:`OverTempLimit.reset_by_hand`), which is refused while still hot.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["FurnaceParams", "FurnacePlant", "OverTempLimit"]


@dataclass(frozen=True, slots=True)
class FurnaceParams:
    """A 2.5 kW tube furnace: ~16 K/min free heating from cold, τ ≈ 65 min cooling."""

    heat_capacity_J_per_K: float = 5500.0
    heater_max_W: float = 2500.0
    loss_W_per_K: float = 1.4
    ambient_C: float = 25.0
    dead_time_s: float = 15.0
    tc_lag_s: float = 10.0
    limit_tc_lag_s: float = 12.0
    step_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("heat_capacity_J_per_K", "heater_max_W", "loss_W_per_K", "step_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.dead_time_s < 0 or self.tc_lag_s < 0 or self.limit_tc_lag_s < 0:
            raise ValueError("dead time and lags must be >= 0")


class FurnacePlant:
    """The furnace itself: ``step(heater_fraction)`` advances one ``params.step_s``.

    Faults (set the attributes): ``heater_stuck_on`` (a welded contactor: full power
    whatever the controller asks), ``heater_failed`` (open element: no power).
    ``heater_enabled`` is the limit's contactor.
    """

    def __init__(self, params: FurnaceParams | None = None, start_C: float | None = None):
        self.params = p = params if params is not None else FurnaceParams()
        t0 = p.ambient_C if start_C is None else start_C
        self.temperature_C = t0
        self.tc_C = t0
        self.limit_tc_C = t0
        self.heater_stuck_on = False
        self.heater_failed = False
        self.heater_enabled = True
        self.power_W = 0.0
        n = max(0, round(p.dead_time_s / p.step_s))
        self._pipe: deque[float] = deque([0.0] * n, maxlen=n) if n else deque()
        self._decay = math.exp(-p.step_s * p.loss_W_per_K / p.heat_capacity_J_per_K)
        self._tc_a = 1.0 - math.exp(-p.step_s / p.tc_lag_s) if p.tc_lag_s > 0 else 1.0
        self._lim_a = 1.0 - math.exp(-p.step_s / p.limit_tc_lag_s) if p.limit_tc_lag_s > 0 else 1.0

    def step(self, heater_fraction: float) -> None:
        """Advance one step with the controller asking for ``heater_fraction`` (0..1)."""
        p = self.params
        demand = min(1.0, max(0.0, heater_fraction))
        if self._pipe.maxlen:
            delayed = self._pipe[0]
            self._pipe.append(demand)
        else:
            delayed = demand
        if self.heater_stuck_on:
            delayed = 1.0
        if self.heater_failed or not self.heater_enabled:
            delayed = 0.0
        self.power_W = delayed * p.heater_max_W
        equilibrium = p.ambient_C + self.power_W / p.loss_W_per_K
        self.temperature_C = equilibrium + (self.temperature_C - equilibrium) * self._decay
        self.tc_C += (self.temperature_C - self.tc_C) * self._tc_a
        self.limit_tc_C += (self.temperature_C - self.limit_tc_C) * self._lim_a


class OverTempLimit:
    """Latching over-temperature limit on its own thermocouple; manual reset only."""

    def __init__(self, limit_C: float, hysteresis_K: float = 5.0) -> None:
        self.limit_C = limit_C
        self.hysteresis_K = hysteresis_K
        self.tripped = False
        self.trip_count = 0
        self.last_reading_C = float("nan")

    def check(self, reading_C: float) -> bool:
        """Feed the limit thermocouple's reading; returns whether the heater may run."""
        self.last_reading_C = reading_C
        # An open limit thermocouple (NaN) trips too: a guard must fail safe.
        if not self.tripped and not reading_C < self.limit_C:
            self.tripped = True
            self.trip_count += 1
        return not self.tripped

    def reset_by_hand(self) -> bool:
        """The operator's reset button: works only once cooled below limit - hysteresis."""
        if self.tripped and self.last_reading_C < self.limit_C - self.hysteresis_K:
            self.tripped = False
        return not self.tripped
