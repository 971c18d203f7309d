"""Compile a furnace protocol into what the run executes (pure, no I/O).

A furnace protocol is a sequence of gas steps and furnace steps. Consecutive furnace steps
become one *programme* that is written into the controller and run by it (the controller,
not the host, carries out ramps and dwells). A programme ends after each ``cool`` step,
because "cool to X" means the sample reaches X: the host waits for the measured
temperature before going on. Gas steps are executed by the host between programmes.

Segment mapping:

- ``ramp`` to T at r  -> ramp segment (T, r)
- ``dwell`` for d     -> dwell segment (d); with a target different from the programme's
  setpoint, a step segment to it first
- ``cool`` to T at r  -> ramp segment (T, r) downwards
- ``cool`` to T       -> step segment to T: the setpoint drops at once, the loop turns the
  heater off and the furnace cools at its natural rate
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from labrig.drivers.capabilities import FurnaceSegment
from labrig.protocols.models import FurnaceStep, GasStep, Group, Loop, Node, Protocol

__all__ = [
    "NATURAL_COOLING_TAU_S",
    "GasPhase",
    "Phase",
    "PlanError",
    "ProgrammePhase",
    "SegmentPlan",
    "ThermalPlan",
    "compile_thermal",
    "natural_cooling_s",
    "step_label",
]

#: Max segments a controller programme holds, its end segment included (2400 series).
MAX_SEGMENTS = 16
#: Assumed furnace time constant for estimating natural cooling (progress display only).
NATURAL_COOLING_TAU_S = 3600.0
AMBIENT_C = 25.0


class PlanError(ValueError):
    """The protocol cannot be run on a furnace; the message names the step."""


def step_label(step: FurnaceStep | GasStep) -> str:
    """What a step is called in events and on the progress display."""
    if step.label:
        return step.label
    if step.text:
        return step.text
    if isinstance(step, GasStep):
        return f"Set gas {step.line} to {step.flow_sccm:g} sccm"
    if step.action == "ramp":
        assert step.target_C is not None and step.rate_K_per_s is not None
        return f"Ramp furnace to {step.target_C:g} °C at {step.rate_K_per_s * 60:g} K/min"
    if step.action == "dwell":
        assert step.duration_s is not None
        return f"Hold furnace for {step.duration_s / 3600:g} h"
    rate = "" if step.rate_K_per_s is None else f" at {step.rate_K_per_s * 60:g} K/min"
    return f"Cool furnace to {step.target_C:g} °C{rate}"


def natural_cooling_s(from_C: float, to_C: float, tau_s: float = NATURAL_COOLING_TAU_S) -> float:
    """Estimated time to cool from ``from_C`` to ``to_C`` by losses alone (an estimate)."""
    above_from = from_C - AMBIENT_C
    above_to = max(to_C - AMBIENT_C, 1.0)
    if above_from <= above_to:
        return 0.0
    return tau_s * math.log(above_from / above_to)


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """One controller segment and the protocol step it comes from."""

    segment: FurnaceSegment
    step_index: int  # index into ThermalPlan.steps
    kind: str  # ramp | dwell | cool


@dataclass(frozen=True, slots=True)
class GasPhase:
    step: GasStep
    step_index: int
    trailing: bool  # after the last furnace step: closing a line waits for cool-down


@dataclass(frozen=True, slots=True)
class ProgrammePhase:
    """Segments run by the controller in one go; ``cool_to_C`` is waited for after."""

    segments: tuple[SegmentPlan, ...]
    cool_to_C: float | None = None
    cool_step_index: int | None = None

    def controller_segments(self) -> list[FurnaceSegment]:
        return [s.segment for s in self.segments]

    def timeline(self, start_C: float) -> list[tuple[float, float, SegmentPlan, float]]:
        """Planned (start_s, end_s, segment, target_C) from ``start_C``, as the controller
        runs it (ramps at their rate, steps at once, dwells for their time)."""
        out: list[tuple[float, float, SegmentPlan, float]] = []
        t, sp = 0.0, start_C
        for sp_plan in self.segments:
            seg = sp_plan.segment
            dur = 0.0
            if seg.kind == "ramp":
                assert seg.target_C is not None and seg.rate_K_per_s is not None
                dur = abs(seg.target_C - sp) / seg.rate_K_per_s
                sp = seg.target_C
            elif seg.kind == "step":
                assert seg.target_C is not None
                sp = seg.target_C
            elif seg.kind == "dwell":
                assert seg.duration_s is not None
                dur = _controller_duration(seg.duration_s)
            out.append((t, t + dur, sp_plan, sp))
            t += dur
        return out

    def final_setpoint(self, start_C: float) -> float:
        tl = self.timeline(start_C)
        return tl[-1][3] if tl else start_C


Phase = GasPhase | ProgrammePhase


@dataclass(frozen=True)
class ThermalPlan:
    """The protocol as phases, with the flat list of steps the phases index into."""

    steps: tuple[FurnaceStep | GasStep, ...]
    phases: tuple[Phase, ...]
    peak_C: float
    gas_lines: tuple[str, ...]
    labels: tuple[str, ...] = field(default=())

    def planned_s(self, start_C: float = AMBIENT_C) -> float:
        """Planned duration (natural cooling estimated), for progress and deadlines."""
        total, sp = 0.0, start_C
        for ph in self.phases:
            if isinstance(ph, GasPhase):
                total += ph.step.wait_s
                continue
            tl = ph.timeline(sp)
            total += tl[-1][1] if tl else 0.0
            end_sp = ph.final_setpoint(sp)
            if ph.cool_to_C is not None:
                peak = max([sp, *(x[3] for x in tl)])
                nat = any(s.segment.kind == "step" for s in ph.segments if s.kind == "cool")
                if nat:
                    total += natural_cooling_s(peak, ph.cool_to_C)
            sp = end_sp
        return total


def _controller_duration(seconds: float) -> float:
    # The 2400 programmer holds dwell times in whole minutes (see the segment layout).
    return max(1.0, round(seconds / 60.0)) * 60.0


def _flatten(protocol: Protocol) -> list[FurnaceStep | GasStep]:
    out: list[FurnaceStep | GasStep] = []

    def walk(nodes: Sequence[Node], where: str) -> None:
        for i, n in enumerate(nodes):
            here = f"{where}[{i}]"
            if isinstance(n, Loop):
                if n.until or n.repeat is None:
                    raise PlanError(f"{here}: a furnace protocol's loops need a fixed 'repeat'")
                if n.checkpoints:
                    raise PlanError(f"{here}: checkpoints are not supported in furnace protocols")
                for _ in range(n.repeat):
                    walk(n.steps, f"{here}.steps")
            elif isinstance(n, Group):
                walk(n.steps, f"{here}.steps")
            elif isinstance(n, FurnaceStep | GasStep):
                out.append(n)
            else:
                kind = n.step
                raise PlanError(
                    f"{here}: a furnace run executes furnace and gas steps only, not {kind!r}"
                )

    walk(protocol.sequence, "sequence")
    return out


def compile_thermal(protocol: Protocol, gas_lines: tuple[str, ...] | None = None) -> ThermalPlan:
    """Phases for ``protocol``; ``gas_lines`` (the position's lines) are checked if given.

    Raises :class:`PlanError` naming the step for anything the furnace cannot run.
    """
    steps = _flatten(protocol)
    if not any(isinstance(s, FurnaceStep) for s in steps):
        raise PlanError("a furnace run needs at least one furnace step")
    last_furnace = max(i for i, s in enumerate(steps) if isinstance(s, FurnaceStep))
    lines: list[str] = []
    phases: list[Phase] = []
    pending: list[SegmentPlan] = []
    peak = -math.inf
    sp: float | None = None  # the programme's setpoint as far as the plan knows

    def flush(cool_to: float | None = None, cool_index: int | None = None) -> None:
        if not pending:
            return
        for k in range(0, len(pending), MAX_SEGMENTS - 1):
            chunk = tuple(pending[k : k + MAX_SEGMENTS - 1])
            last = k + MAX_SEGMENTS - 1 >= len(pending)
            phases.append(
                ProgrammePhase(chunk, cool_to if last else None, cool_index if last else None)
            )
        pending.clear()

    for i, s in enumerate(steps):
        label = f"step {i + 1} ({step_label(s)})"
        if isinstance(s, GasStep):
            if gas_lines is not None and s.line not in gas_lines:
                raise PlanError(
                    f"{label}: this furnace position has no gas line {s.line!r} "
                    f"(have {', '.join(gas_lines) or 'none'})"
                )
            if s.line not in lines:
                lines.append(s.line)
            flush()
            phases.append(GasPhase(s, i, trailing=i > last_furnace))
            continue
        if s.action == "ramp":
            assert s.target_C is not None
            pending.append(
                SegmentPlan(FurnaceSegment("ramp", s.target_C, s.rate_K_per_s), i, "ramp")
            )
            sp = s.target_C
            peak = max(peak, s.target_C)
        elif s.action == "dwell":
            assert s.duration_s is not None
            if s.duration_s < 30.0:
                raise PlanError(f"{label}: the controller holds dwells in whole minutes")
            if s.target_C is not None and s.target_C != sp:
                pending.append(SegmentPlan(FurnaceSegment("step", s.target_C), i, "dwell"))
                sp = s.target_C
                peak = max(peak, s.target_C)
            if sp is None:
                raise PlanError(f"{label}: a dwell needs a temperature (a ramp before it or 'at')")
            pending.append(
                SegmentPlan(FurnaceSegment("dwell", duration_s=s.duration_s), i, "dwell")
            )
        else:
            assert s.target_C is not None
            if s.rate_K_per_s is not None:
                seg = FurnaceSegment("ramp", s.target_C, s.rate_K_per_s)
            else:
                seg = FurnaceSegment("step", s.target_C)
            pending.append(SegmentPlan(seg, i, "cool"))
            sp = s.target_C
            flush(s.target_C + s.tolerance_K, i)
    flush()
    return ThermalPlan(
        steps=tuple(steps),
        phases=tuple(phases),
        peak_C=peak if math.isfinite(peak) else AMBIENT_C,
        gas_lines=tuple(lines),
        labels=tuple(step_label(s) for s in steps),
    )
