"""Cycling on a BioLogic channel: a ChannelStep as techniques, and how it ended.

The Development Package has no battery-cycling technique; a step becomes:

- ``rest``: OCV for the step's time end (a rest ends on time only here);
- ``cc``: CPLIMIT at the step's current, its voltage ends and the channel's voltage
  limits as limit tests, its time end (a capacity end at constant current is the time
  ``Q/|I|``) as the step duration;
- ``cv``: CALIMIT at the voltage, its current ends and the current limit as tests;
- ``cccv``: CPLIMIT to the voltage, then CALIMIT holding it (one load, two techniques).

Every limit test stops the experiment when it fires (``Exit_Cond`` 2; the CC part of a
CCCV goes on to its CV part instead), so the firmware ends each step and guards the
channel's limits even if the host is gone; the host starts the next step. How a step
ended is read from its last record: which threshold it reached, or its duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from labrig.drivers.capabilities import ChannelLimits, ChannelStep, EndCondition

from ._params import (
    CaLimit,
    CpLimit,
    ExitCond,
    IRange,
    LimitStep,
    LimitTest,
    Ocv,
    Technique,
)

__all__ = ["FOREVER_S", "StepPlan", "plan_step", "step_end"]

#: duration of a step with no time end (the firmware needs one; check the unit's limit)
FOREVER_S = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class StepPlan:
    """The techniques of one step and the thresholds they end on."""

    step: ChannelStep
    techniques: tuple[Technique, ...]
    up_V: float | None = None  # E > up_V ends the (CC) step
    up_is_limit: bool = False
    down_V: float | None = None
    down_is_limit: bool = False
    taper_A: float | None = None  # |I| below this ends the CV (part)
    i_max_A: float | None = None  # |I| above this is a safety trip
    duration_s: float = FOREVER_S
    duration_reason: str = "max_duration"
    sign: float = 1.0  # expected sign of the current


def _refuse(step: ChannelStep, why: str) -> ValueError:
    return ValueError(f"step {step.step_id} ({step.mode}): {why}")


def _time_end(step: ChannelStep, ends: tuple[EndCondition, ...]) -> tuple[float, str]:
    best, why = FOREVER_S, "max_duration"
    if step.max_duration_s is not None:
        best = step.max_duration_s
    for e in ends:
        if e.quantity == "time" and e.op in (">=", "cross") and e.value < best:
            best, why = e.value, "time"
        if e.quantity == "capacity" and step.mode == "cc" and step.current_A != 0:
            t = e.value * 3600.0 / abs(step.current_A)
            if t < best:
                best, why = t, "capacity"
    return best, why


def _voltage_bounds(
    step: ChannelStep, limits: ChannelLimits, ewe_V: float
) -> tuple[float, bool, float, bool]:
    up, up_lim = limits.v_max_V, True
    down, down_lim = limits.v_min_V, True
    for e in step.ends:
        if e.quantity != "voltage":
            continue
        rising = e.op == ">=" or (e.op == "cross" and ewe_V < e.value)
        if rising and e.value <= up:
            up, up_lim = e.value, False
        elif not rising and e.value >= down:
            down, down_lim = e.value, False
    return up, up_lim, down, down_lim


def _check_quantities(step: ChannelStep, allowed: set[str], part: str = "") -> None:
    for e in (*step.ends, *step.cv_ends) if not part else step.cv_ends:
        if e.quantity not in allowed:
            raise _refuse(step, f"an end on {e.quantity} is not run by this potentiostat here "
                                f"(ends allowed: {', '.join(sorted(allowed))})")  # fmt: skip


def plan_step(
    step: ChannelStep, limits: ChannelLimits, *, ewe_V: float, i_range: IRange | None = None
) -> StepPlan:
    """The techniques for ``step`` given the channel's limits and the voltage now."""
    rec = step.record
    dt = rec.every_s if rec.every_s is not None else 0.0
    if step.mode == "rest":
        _check_quantities(step, {"time"})
        t, why = _time_end(step, step.ends)
        if t >= FOREVER_S:
            raise _refuse(step, "a rest needs a time end or max_duration_s")
        return StepPlan(step, (Ocv(t, dt, rec.dV_V or 0.0),), duration_s=t, duration_reason=why)
    if step.mode in ("cc", "cccv") and abs(step.current_A) > limits.i_max_A * (1 + 1e-9):
        raise _refuse(step, f"|{step.current_A}| A is above the limit {limits.i_max_A} A")
    if step.mode == "cc":
        return _plan_cc(step, limits, ewe_V, i_range, dt)
    if step.voltage_V is None or not limits.v_min_V <= step.voltage_V <= limits.v_max_V:
        raise _refuse(step, f"voltage {step.voltage_V} V outside [{limits.v_min_V}, "
                            f"{limits.v_max_V}] V")  # fmt: skip
    if step.mode == "cv":
        return _plan_cv(step, limits, ewe_V, dt)
    return _plan_cccv(step, limits, ewe_V, i_range, dt)


def _plan_cc(
    step: ChannelStep, limits: ChannelLimits, ewe_V: float, i_range: IRange | None, dt: float
) -> StepPlan:
    _check_quantities(step, {"voltage", "time", "capacity"})
    up, up_lim, down, down_lim = _voltage_bounds(step, limits, ewe_V)
    t, why = _time_end(step, step.ends)
    tests = (LimitTest("E", True, up), LimitTest("E", False, down))
    rng = i_range or IRange.for_current(max(abs(step.current_A), 1e-9))
    cp = CpLimit(
        (LimitStep(step.current_A, t, tests, ExitCond.STOP),),
        record_every_dt_s=dt, record_every_dE_V=step.record.dV_V or 0.0, i_range=rng,
    )  # fmt: skip
    return StepPlan(step, (cp,), up, up_lim, down, down_lim, duration_s=t, duration_reason=why,
                    sign=math.copysign(1.0, step.current_A))  # fmt: skip


def _taper(step: ChannelStep, ends: tuple[EndCondition, ...]) -> float | None:
    vals = [e.value for e in ends if e.quantity == "current" and e.op in ("<=", "cross")]
    return max(vals) if vals else None


def _current_tests(taper: float | None, i_max: float, sign: float) -> tuple[LimitTest, ...]:
    """Tests on the signed current (check on the unit whether I tests see |I|): a
    charging taper falls to ``+x``, a discharging one rises to ``-x``; the current limit
    is a trip beyond ``±i_max``."""
    charging = sign > 0
    safety = LimitTest("I", charging, sign * i_max)
    if taper is None:
        return (safety,)
    return (LimitTest("I", not charging, sign * taper), safety)


def _plan_cv(step: ChannelStep, limits: ChannelLimits, ewe_V: float, dt: float) -> StepPlan:
    _check_quantities(step, {"current", "time"})
    assert step.voltage_V is not None
    sign = 1.0 if step.voltage_V >= ewe_V else -1.0
    taper = _taper(step, (*step.ends, *step.cv_ends))
    t, why = _time_end(step, (*step.ends, *step.cv_ends))
    ca = CaLimit(
        (LimitStep(step.voltage_V, t, _current_tests(taper, limits.i_max_A, sign), ExitCond.STOP),),
        record_every_dt_s=dt, record_every_dI_A=step.record.dI_A or 0.0,
    )  # fmt: skip
    return StepPlan(step, (ca,), taper_A=taper, i_max_A=limits.i_max_A, duration_s=t,
                    duration_reason=why, sign=sign)  # fmt: skip


def _plan_cccv(
    step: ChannelStep, limits: ChannelLimits, ewe_V: float, i_range: IRange | None, dt: float
) -> StepPlan:
    _check_quantities(step, {"current", "time", "capacity"})
    _check_quantities(step, {"current", "time"}, part="cv")
    assert step.voltage_V is not None
    sign = math.copysign(1.0, step.current_A)
    t, why = _time_end(step, (*step.ends, *step.cv_ends))
    if sign > 0:
        cc_tests = (LimitTest("E", True, step.voltage_V), LimitTest("E", False, limits.v_min_V))
    else:
        cc_tests = (LimitTest("E", False, step.voltage_V), LimitTest("E", True, limits.v_max_V))
    rng = i_range or IRange.for_current(max(abs(step.current_A), 1e-9))
    cc = CpLimit(
        (LimitStep(step.current_A, t, cc_tests, ExitCond.NEXT_TECHNIQUE),),
        record_every_dt_s=dt, record_every_dE_V=step.record.dV_V or 0.0, i_range=rng,
    )  # fmt: skip
    taper = _taper(step, (*step.ends, *step.cv_ends))
    cv = CaLimit(
        (LimitStep(step.voltage_V, t, _current_tests(taper, limits.i_max_A, sign), ExitCond.STOP),),
        record_every_dt_s=dt, record_every_dI_A=step.record.dI_A or 0.0,
    )  # fmt: skip
    return StepPlan(step, (cc, cv), taper_A=taper, i_max_A=limits.i_max_A, duration_s=t,
                    duration_reason=why, sign=sign)  # fmt: skip


def _find(step: ChannelStep, quantity: str) -> EndCondition | None:
    for e in (*step.ends, *step.cv_ends):
        if e.quantity == quantity:
            return e
    return None


def _voltage_end(step: ChannelStep, value: float) -> EndCondition | None:
    best: EndCondition | None = None
    for e in step.ends:
        if e.quantity == "voltage" and (
            best is None or abs(e.value - value) < abs(best.value - value)
        ):
            best = e
    return best


def step_end(
    plan: StepPlan,
    *,
    step_time_s: float,
    voltage_V: float,
    current_A: float,
    last_technique: int,
    tol_V: float = 2e-3,
    tol_rel: float = 0.1,
) -> tuple[str, str]:
    """``(reason, action)`` for a step whose techniques have stopped, read from its last
    record (``last_technique``: the index in the plan of the technique that ran last).

    The firmware stops on the measured value crossing a threshold, so the last record
    sits on the threshold within the measurement noise: ``tol_V`` for voltages,
    ``tol_rel`` of the value for currents."""
    step = plan.step
    tech = plan.techniques[min(last_technique, len(plan.techniques) - 1)]
    if isinstance(tech, CpLimit):
        if plan.up_V is not None and voltage_V >= plan.up_V - tol_V:
            return _why(step, "voltage", plan.up_is_limit, plan.up_V)
        if plan.down_V is not None and voltage_V <= plan.down_V + tol_V:
            return _why(step, "voltage", plan.down_is_limit, plan.down_V)
    if isinstance(tech, CaLimit):
        i = abs(current_A)
        if plan.i_max_A is not None and i >= plan.i_max_A * (1 - tol_rel):
            return "safety", "abort"
        if plan.taper_A is not None and i <= plan.taper_A * (1 + tol_rel):
            e = _find(step, "current")
            return "current", (e.action if e is not None else "next")
    if step_time_s >= plan.duration_s * (1 - 1e-6) - 1e-3:
        reason = plan.duration_reason
        e = _find(step, reason) if reason in ("time", "capacity") else None
        return reason, (e.action if e is not None else "next")
    return "stopped", "end_block"


def _why(step: ChannelStep, quantity: str, is_limit: bool, value: float) -> tuple[str, str]:
    if is_limit:
        return "safety", "abort"
    e = _voltage_end(step, value)
    return quantity, (e.action if e is not None else "next")
