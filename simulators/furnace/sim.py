"""A furnace with its controller and over-temperature limit on the event loop's clock.

:meth:`FurnaceSim.advance_to` integrates from the last time it was called in fixed
steps, so any jump of the (virtual) clock - an hour with nobody asking - is simulated
exactly as if the controller had been sampling all along, and the limit trips at the
right moment even when no host polls.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from labrig.simulators.furnace.controller import ControllerModel, PidParams
from labrig.simulators.furnace.physics import FurnaceParams, FurnacePlant, OverTempLimit

__all__ = ["FurnaceSim"]


class FurnaceSim:
    """Furnace + controller (+ optional independent limit).

    Fault switches, set through :meth:`inject` so the physics is first brought up to the
    moment of the fault: ``thermocouple_open`` (the control thermocouple: PV shows sensor
    break and the controller drives its sensor-break output), ``heater_stuck_on`` (welded
    contactor), ``heater_failed`` (open element).
    """

    def __init__(
        self,
        now: Callable[[], float],
        *,
        params: FurnaceParams | None = None,
        pid: PidParams | None = None,
        limit_C: float | None = None,
        start_C: float | None = None,
    ) -> None:
        self._now = now
        self.plant = FurnacePlant(params, start_C)
        self.controller = ControllerModel(pid=pid if pid is not None else PidParams())
        t0 = self.plant.temperature_C
        self.controller.target_sp_C = self.controller.working_sp_C = t0
        self.controller.sp2_C = t0
        self.limit = OverTempLimit(limit_C) if limit_C is not None else None
        self.thermocouple_open = False
        self._t = now()
        self.steps = 0

    def inject(
        self,
        *,
        thermocouple_open: bool | None = None,
        heater_stuck_on: bool | None = None,
        heater_failed: bool | None = None,
    ) -> None:
        """Switch faults on or off now (None leaves a switch as it is)."""
        self.advance_to()
        if thermocouple_open is not None:
            self.thermocouple_open = thermocouple_open
        if heater_stuck_on is not None:
            self.plant.heater_stuck_on = heater_stuck_on
        if heater_failed is not None:
            self.plant.heater_failed = heater_failed

    @property
    def params(self) -> FurnaceParams:
        return self.plant.params

    def pv(self) -> float | None:
        """The control thermocouple reading, None when open."""
        return None if self.thermocouple_open else self.plant.tc_C

    def advance_to(self, t: float | None = None) -> None:
        """Integrate up to ``t`` (default: now) in whole steps."""
        target = self._now() if t is None else t
        dt = self.params.step_s
        n = math.floor((target - self._t) / dt + 1e-9)
        plant, ctrl, limit = self.plant, self.controller, self.limit
        for _ in range(max(0, n)):
            out = ctrl.step(None if self.thermocouple_open else plant.tc_C, dt)
            if limit is not None:
                plant.heater_enabled = limit.check(plant.limit_tc_C)
            plant.step(out / 100.0)
        if n > 0:
            self._t += n * dt
            self.steps += n
