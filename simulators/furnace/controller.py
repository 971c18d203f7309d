"""What a Eurotherm controller's firmware does each sample (pure).

A PID loop (proportional band in K, integral and derivative times in s, derivative on the
measurement, anti-windup by conditional integration), a working setpoint that follows the
target through a rate limit, manual mode, sensor-break output, and the 2400-style
programmer that runs ramp-rate, ramp-time, dwell, step and end segments itself once
started. The host only writes segments and run/hold/reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ControllerModel", "PidParams", "Segment"]

# Segment type numbers, as the 2400 manual lists them.
SEG_END, SEG_RATE, SEG_TIME, SEG_DWELL, SEG_STEP = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class PidParams:
    """Tuned for the default furnace: small overshoot on a 2 K/min ramp's end."""

    proportional_band_K: float = 12.0
    integral_s: float = 300.0
    derivative_s: float = 30.0
    sensor_break_output_pct: float = 0.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A decoded programme segment (temperatures in °C, rate in K/s, duration in s)."""

    kind: int
    target_C: float = 0.0
    rate_K_per_s: float = 0.0
    duration_s: float = 0.0


@dataclass
class ControllerModel:
    """State and behaviour of one control loop with its programmer.

    Programme states: ``reset``, ``running``, ``hold``, ``holdback``, ``complete``.
    ``holdback_K`` > 0 freezes a programme while |PV - working SP| exceeds it.
    """

    pid: PidParams = field(default_factory=PidParams)
    target_sp_C: float = 25.0
    sp2_C: float = 25.0
    rate_limit_K_per_s: float = 0.0  # 0: off
    working_sp_C: float = 25.0
    manual: bool = False
    manual_output_pct: float = 0.0
    output_pct: float = 0.0
    program_state: str = "reset"
    holdback_K: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    segment_index: int = 0
    segment_elapsed_s: float = 0.0
    segment_start_sp_C: float = 0.0
    _integral: float = 0.0
    _last_pv: float | None = None

    # ------------------------------------------------------------------ programmer

    def run(self, segments: list[Segment], pv_C: float | None) -> None:
        """Start (or resume from hold) the programme; it starts from the measured value."""
        if self.program_state == "hold":
            self.program_state = "running"
            return
        self.segments = segments
        self.segment_index = 0
        self.segment_elapsed_s = 0.0
        start = pv_C if pv_C is not None and math.isfinite(pv_C) else self.working_sp_C
        self.working_sp_C = start  # "servo to PV": no step at start
        self.segment_start_sp_C = start
        self.program_state = "running"
        self._enter_segment()

    def hold(self) -> None:
        if self.program_state in ("running", "holdback"):
            self.program_state = "hold"

    def reset(self) -> None:
        self.program_state = "reset"
        self.segments = []

    def _enter_segment(self) -> None:
        while self.program_state == "running":
            if self.segment_index >= len(self.segments):
                self.program_state = "complete"
                return
            seg = self.segments[self.segment_index]
            if seg.kind == SEG_END:
                self.program_state = "complete"
                return
            if seg.kind == SEG_STEP:
                self.working_sp_C = seg.target_C
                self.segment_index += 1
                continue
            self.segment_start_sp_C = self.working_sp_C
            self.segment_elapsed_s = 0.0
            return

    def _advance_program(self, dt: float, pv_C: float | None) -> None:
        if self.holdback_K > 0 and (
            pv_C is None or abs(pv_C - self.working_sp_C) > self.holdback_K
        ):
            self.program_state = "holdback"
            return
        self.program_state = "running"
        left = dt
        while left > 1e-12 and self.program_state == "running":
            seg = self.segments[self.segment_index]
            if seg.kind == SEG_RATE:
                gap = seg.target_C - self.working_sp_C
                need = abs(gap) / seg.rate_K_per_s if seg.rate_K_per_s > 0 else 0.0
                if need > left:
                    self.working_sp_C += math.copysign(seg.rate_K_per_s * left, gap)
                    return
                self.working_sp_C = seg.target_C
                left -= need
            elif seg.kind in (SEG_TIME, SEG_DWELL):
                remaining = seg.duration_s - self.segment_elapsed_s
                if remaining > left:
                    self.segment_elapsed_s += left
                    if seg.kind == SEG_TIME:
                        frac = self.segment_elapsed_s / seg.duration_s
                        span = seg.target_C - self.segment_start_sp_C
                        self.working_sp_C = self.segment_start_sp_C + frac * span
                    return
                if seg.kind == SEG_TIME:
                    self.working_sp_C = seg.target_C
                left -= max(0.0, remaining)
            self.segment_index += 1
            self._enter_segment()

    # ------------------------------------------------------------------ loop

    def _advance_working_sp(self, dt: float) -> None:
        if self.rate_limit_K_per_s <= 0:
            self.working_sp_C = self.target_sp_C
            return
        gap = self.target_sp_C - self.working_sp_C
        stepk = self.rate_limit_K_per_s * dt
        self.working_sp_C = (
            self.target_sp_C
            if abs(gap) <= stepk
            else (self.working_sp_C + math.copysign(stepk, gap))
        )

    def step(self, pv_C: float | None, dt: float) -> float:
        """One sample: update the working setpoint and return the output in %.

        ``pv_C`` None means sensor break: the output goes to the sensor-break value.
        """
        if self.program_state in ("running", "holdback"):
            self._advance_program(dt, pv_C)
        elif self.program_state == "reset":
            self._advance_working_sp(dt)
        # hold and complete keep the working setpoint where it is
        if pv_C is None:
            self._last_pv = None
            self.output_pct = self.pid.sensor_break_output_pct
            return self.output_pct
        if self.manual:
            # Bumpless return to automatic: the integral tracks the manual output.
            self._integral = self.manual_output_pct
            self._last_pv = pv_C
            self.output_pct = self.manual_output_pct
            return self.output_pct
        gain = 100.0 / self.pid.proportional_band_K
        error = self.working_sp_C - pv_C
        d_pv = 0.0 if self._last_pv is None else (pv_C - self._last_pv) / dt
        self._last_pv = pv_C
        p_term = gain * error
        d_term = -gain * self.pid.derivative_s * d_pv
        trial = p_term + self._integral + d_term
        # Conditional integration: do not wind up against a saturated output.
        if not ((trial >= 100.0 and error > 0) or (trial <= 0.0 and error < 0)):
            self._integral += gain * error * dt / self.pid.integral_s
            self._integral = min(100.0, max(-100.0, self._integral))
        out = p_term + self._integral + d_term
        self.output_pct = min(100.0, max(0.0, out))
        self.manual_output_pct = self.output_pct
        return self.output_pct
