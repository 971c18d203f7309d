"""What a protocol amounts to: steps, cycles, EIS sweeps and how long it will take.

The estimate is for real hardware and deliberately simple (the executor's dry run on the
virtual clock gives the exact simulated figure):

- a constant-current step with a C-rate (or a current the cell spec turns into one) ending
  at a voltage takes ``FULL_DEPTH / rate`` hours (a full charge or discharge between the
  cut-offs delivers about 95 % of nominal); a capacity cut-off shortens it; the step's
  ``duration_s`` (its time cap) caps it;
- rests, holds, dwells and waits take their durations; open-ended ones (``until`` only)
  get a stated guess and make the estimate "approximate";
- an EIS sweep takes the sum over its frequencies of ``max(EIS_PERIODS / f, EIS_MIN_S)``;
- a furnace ramp or cool takes the time the furnace needs (:mod:`protocols.furnace_model`):
  the programmed rate where the furnace can follow it, its own heating or natural cooling
  rate where it cannot; a cool-down ends within its tolerance of the target. A programmed
  rate beyond the furnace's reach is listed in ``Summary.warnings``.

A cycle is a charge followed by a discharge (rests and EIS in between do not matter);
checkpoint blocks with ``counts_as_cycle: false`` never make or break a cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from . import models as m
from .furnace_model import FurnaceModel, segment_seconds

__all__ = [
    "EIS_MIN_S",
    "EIS_PERIODS",
    "FULL_DEPTH",
    "LoopSummary",
    "Summary",
    "eis_sweep_s",
    "estimate_duration_s",
    "format_duration",
    "render_summary",
    "summarize",
]

FULL_DEPTH = 0.95
# Periods measured per frequency. Calibrated so that 7 MHz-10 mHz at 10 points per decade
# takes about 18 min, the sweep time the lab reports for its BioLogic VMP-300.
EIS_PERIODS = 2.2
EIS_MIN_S = 0.1
OPEN_ENDED_GUESS_S = 3600.0  # a rest/hold that ends only on a condition
CV_TAIL_GUESS_S = 1800.0  # "then hold until C/20" without a time cap


@dataclass(frozen=True)
class LoopSummary:
    """One loop: its label, iterations (``repeat`` or ``max_repeat``) and checkpoints."""

    label: str
    iterations: int
    open_ended: bool
    checkpoints: tuple[str, ...]


@dataclass(frozen=True)
class Summary:
    """Counts and an estimated duration for a protocol (see the module docstring)."""

    name: str
    source: str | None
    steps: int  # steps written, checkpoints included
    expanded_steps: int  # steps that will run
    cycles: int
    eis: int
    duration_s: float
    approximate: bool  # some step durations are guesses
    loops: tuple[LoopSummary, ...]
    cell: str | None
    limits: str | None
    warnings: tuple[str, ...] = ()

    @property
    def duration_h(self) -> float:
        return self.duration_s / 3600.0

    @property
    def duration_days(self) -> float:
        return self.duration_s / 86400.0


@dataclass
class _Tally:
    steps: int = 0
    duration: float = 0.0
    eis: int = 0
    cycles: int = 0
    first: str | None = None  # first charge/discharge direction
    last: str | None = None
    guessed: bool = False


def _then(a: _Tally, b: _Tally) -> _Tally:
    joined = a.last == "charge" and b.first == "discharge"
    return _Tally(
        steps=a.steps + b.steps,
        duration=a.duration + b.duration,
        eis=a.eis + b.eis,
        cycles=a.cycles + b.cycles + int(joined),
        first=a.first or b.first,
        last=b.last or a.last,
        guessed=a.guessed or b.guessed,
    )


def _times(t: _Tally, n: int) -> _Tally:
    if n <= 0:
        return _Tally()
    joined = int(t.last == "charge" and t.first == "discharge")
    return _Tally(
        steps=t.steps * n,
        duration=t.duration * n,
        eis=t.eis * n,
        cycles=t.cycles * n + joined * (n - 1),
        first=t.first,
        last=t.last,
        guessed=t.guessed,
    )


def eis_sweep_s(step: m.EisStep) -> float:
    """Estimated time of one impedance sweep, the rest before it included."""
    sweep = sum(max(EIS_PERIODS / f, EIS_MIN_S) for f in step.frequencies_Hz())
    return step.rest_before_s + sweep


class _Estimator:
    def __init__(self, protocol: m.Protocol, furnace: FurnaceModel | None = None) -> None:
        self.cell = protocol.cell
        self.furnace = furnace or FurnaceModel()
        self.furnace_C = self.furnace.ambient_C
        self.loops: list[LoopSummary] = []
        self.warnings: list[str] = []
        try:
            self.one_c_A: float | None = (
                protocol.cell.one_c_A() if protocol.cell is not None else None
            )
        except ValueError:
            self.one_c_A = None

    # ---- steps

    def _rate(self, current: m.Current) -> float | None:
        """The step's current as a C-rate, when the cell spec allows."""
        if current.basis == "C":
            return current.value
        if self.one_c_A is None:
            return None
        try:
            return current.amps(self.cell) / self.one_c_A
        except ValueError:
            return None

    def _cc_seconds(self, step: m.CurrentStep) -> tuple[float, bool]:
        rate = self._rate(step.current)
        est: float | None = None
        if rate is not None and rate > 0:
            depth = FULL_DEPTH if any(c.quantity == "voltage" for c in step.until) else None
            for c in step.until:
                if c.quantity == "capacity" and c.unit == "fraction":
                    depth = min(depth or math.inf, c.value)
                elif c.quantity == "capacity" and c.unit == "Ah" and self.one_c_A:
                    depth = min(depth or math.inf, c.value / self.one_c_A)
            if depth is not None:
                est = depth / rate * 3600.0
        guessed = False
        if step.duration_s is not None:
            est = step.duration_s if est is None else min(est, step.duration_s)
        if est is None:
            est, guessed = OPEN_ENDED_GUESS_S, True
        if step.cv is not None:
            if step.cv.duration_s is not None:
                est += step.cv.duration_s
            else:
                est += CV_TAIL_GUESS_S
                guessed = True
        return est, guessed

    def _pulse_seconds(self, step: m.PulseStep) -> tuple[float, bool]:
        count: float | None = step.repeat
        rate = self._rate(step.current)
        if step.until and rate:
            # The train ends near the cut-off: about a full depth in pulses.
            needed = math.ceil(FULL_DEPTH / (rate * step.pulse_s / 3600.0))
            count = needed if count is None else min(count, needed)
        guessed = count is None
        n = count if count is not None else 1
        return n * (step.pulse_s + step.rest_s), guessed

    def step(self, s: Any) -> _Tally:
        t = _Tally(steps=1)
        if isinstance(s, m.CurrentStep):
            t.duration, t.guessed = self._cc_seconds(s)
            t.first = t.last = s.direction
        elif isinstance(s, m.PulseStep):
            t.duration, t.guessed = self._pulse_seconds(s)
            t.first = t.last = s.direction
        elif isinstance(s, m.RestStep | m.HoldStep):
            if s.duration_s is not None:
                t.duration = s.duration_s
            else:
                t.duration, t.guessed = OPEN_ENDED_GUESS_S, True
        elif isinstance(s, m.EisStep):
            t.duration = eis_sweep_s(s)
            t.eis = 1
        elif isinstance(s, m.ChamberStep):
            t.duration = s.wait.hold_s if s.wait is not None else 0.0
        elif isinstance(s, m.FurnaceStep):
            t.duration = self._furnace_seconds(s)
        elif isinstance(s, m.GasStep):
            t.duration = s.wait_s
        return t

    def _furnace_seconds(self, s: m.FurnaceStep) -> float:
        if s.action == "dwell":
            if s.target_C is not None:
                self.furnace_C = s.target_C
            return s.duration_s or 0.0
        assert s.target_C is not None  # the model requires it for ramp and cool
        start = self.furnace_C
        # a cool-down is done within its tolerance of the target (the run waits for it)
        end = s.target_C + s.tolerance_K if s.action == "cool" else s.target_C
        self.furnace_C = s.target_C
        if s.action == "cool" and start <= end:
            return 0.0
        secs, beyond = segment_seconds(self.furnace, start, end, s.rate_K_per_s)
        if beyond is not None and s.rate_K_per_s is not None:
            self._rate_warning(s, start, end, beyond, secs)
        if not math.isfinite(secs):
            self.warnings.append(
                f"'{_step_name(s)}': the furnace cannot get to {end:g} °C (room "
                f"{self.furnace.ambient_C:g} °C); give the cool-down a tolerance_K"
            )
            return 0.0
        return secs

    def _rate_warning(
        self, s: m.FurnaceStep, start: float, end: float, beyond: float, secs: float
    ) -> None:
        assert s.rate_K_per_s is not None
        heating = end > start
        r_at = [self.furnace.reach(t, heating) * 60 for t in (beyond, end)]
        where = f"above {beyond:.0f} °C" if heating else f"below {beyond:.0f} °C"
        how = "heating at most" if heating else "natural cooling"
        nominal = abs(end - start) / s.rate_K_per_s
        self.warnings.append(
            f"'{_step_name(s)}': {s.rate_K_per_s * 60:g} K/min is beyond the furnace {where} "
            f"({how} {r_at[0]:.2g} K/min at {beyond:.0f} °C, {r_at[1]:.2g} K/min at "
            f"{end:.0f} °C): the step takes about {format_duration(secs)}, not "
            f"{format_duration(nominal)}"
        )

    # ---- structure

    def nodes(self, nodes: list[Any]) -> _Tally:
        total = _Tally()
        for n in nodes:
            if isinstance(n, m.Loop):
                total = _then(total, self.loop(n))
            elif isinstance(n, m.Group):
                total = _then(total, self.nodes(n.steps))
            else:
                total = _then(total, self.step(n))
        return total

    def loop(self, loop: m.Loop) -> _Tally:
        n = loop.bound()
        body = self.nodes(loop.steps)
        blocks: list[tuple[m.Checkpoint, _Tally]] = []
        for cp in loop.checkpoints:
            t = self.nodes(cp.steps)
            if not cp.counts_as_cycle:
                t = replace(t, cycles=0, first=None, last=None)
            blocks.append((cp, t))
        fires: set[int] = set()
        for cp, _ in blocks:
            fires.update(a for a in cp.at if a <= n)
            if cp.every is not None:
                fires.update(range(cp.every, n + 1, cp.every))
        total = _Tally()
        done = 0
        for i in sorted(fires):
            total = _then(total, _times(body, i - 1 - done))
            before = [t for cp, t in blocks if cp.position == "before" and cp.fires_at(i)]
            after = [t for cp, t in blocks if cp.position == "after" and cp.fires_at(i)]
            it = _Tally()
            for t in before:
                it = _then(it, t)
            it = _then(it, body)
            for t in after:
                it = _then(it, t)
            total = _then(total, it)
            done = i
        total = _then(total, _times(body, n - done))
        label = loop.label or f"loop {len(self.loops) + 1}"
        cps = tuple(_describe_checkpoint(cp) for cp in loop.checkpoints)
        self.loops.append(LoopSummary(label, n, loop.repeat is None, cps))
        return total


def _step_name(s: m.FurnaceStep) -> str:
    return s.label or s.text or f"{s.action} to {s.target_C:g} °C"


def _describe_checkpoint(cp: m.Checkpoint) -> str:
    when = []
    if cp.every is not None:
        when.append(f"every {cp.every}")
    if cp.at:
        when.append("at " + ", ".join(str(a) for a in cp.at))
    label = cp.label or "checkpoint"
    return f"{label} {' and '.join(when)}"


def _describe_cell(cell: m.CellSpec | None) -> str | None:
    if cell is None:
        return None
    parts: list[str] = []
    mass = cell.cam_mass_mg_value()
    if mass is not None:
        parts.append(f"{mass:g} mg CAM")
    try:
        one_c = cell.one_c_A()
    except ValueError:
        one_c = None
    if one_c is not None:
        basis = (
            f" ({cell.c_rate_basis_mA_per_g:g} mA/g)"
            if cell.c_rate_basis_mA_per_g is not None and mass is not None
            else ""
        )
        parts.append(f"1C = {one_c * 1e3:.4g} mA{basis}")
    if cell.counter_electrode:
        parts.append(f"vs {cell.counter_electrode}")
    return ", ".join(parts) or None


def _describe_limits(lim: m.SafetyLimits) -> str | None:
    parts: list[str] = []
    if lim.voltage_V is not None:
        parts.append(f"{lim.voltage_V[0]:g}-{lim.voltage_V[1]:g} V")
    if lim.current_abs_A is not None:
        parts.append(f"|I| <= {lim.current_abs_A * 1e3:g} mA")
    if lim.temperature_C is not None:
        parts.append(f"{lim.temperature_C[0]:g}-{lim.temperature_C[1]:g} °C")
    if lim.furnace_max_C is not None:
        parts.append(f"furnace <= {lim.furnace_max_C:g} °C")
    if not parts:
        return None
    return ", ".join(parts) + f" (on violation: {lim.on_violation})"


def summarize(protocol: m.Protocol, furnace: FurnaceModel | None = None) -> Summary:
    """Count steps, cycles and EIS sweeps and estimate the run time on hardware
    (``furnace``: what the furnace can do; default the simulated tube furnace's)."""
    est = _Estimator(protocol, furnace)
    t = est.nodes(protocol.sequence)
    return Summary(
        name=protocol.name,
        source=protocol.source,
        steps=len(protocol.steps()),
        expanded_steps=t.steps,
        cycles=t.cycles,
        eis=t.eis,
        duration_s=t.duration,
        approximate=t.guessed,
        loops=tuple(est.loops),
        cell=_describe_cell(protocol.cell),
        limits=_describe_limits(protocol.limits),
        warnings=tuple(dict.fromkeys(est.warnings)),
    )


def estimate_duration_s(protocol: m.Protocol) -> float:
    """The run time :func:`summarize` estimates, in time proportional to the protocol as
    written: a checkpoint counts by how often it fires instead of being walked iteration
    by iteration (the loader checks every protocol's duration with it)."""
    est = _Estimator(protocol)

    def nodes(items: list[Any]) -> float:
        total = 0.0
        for n in items:
            if isinstance(n, m.Loop):
                k = n.bound()
                total += k * nodes(n.steps)
                for cp in n.checkpoints:
                    total += cp.fires_within(k) * nodes(cp.steps)
            elif isinstance(n, m.Group):
                total += nodes(n.steps)
            else:
                total += est.step(n).duration
        return total

    return nodes(protocol.sequence)


def format_duration(seconds: float) -> str:
    """'45 min', '19.0 h', '2,652 h (110.5 days)'."""
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours:,.0f} h ({hours / 24:.1f} days)"


def render_summary(summary: Summary) -> str:
    """A human-readable summary that fits on one screen."""
    s = summary
    approx = "~" if s.approximate else ""
    head = (
        f"{s.name}: {s.cycles:,} cycle{'' if s.cycles == 1 else 's'}, {s.eis:,} EIS, "
        f"est. {approx}{format_duration(s.duration_s)}"
    )
    lines = [head]
    lines.append(f"  steps: {s.steps:,} written, {s.expanded_steps:,} to run")
    if s.loops:
        loops = []
        for lp in s.loops:
            text = f"{lp.label} x{lp.iterations:,}" + (" (at most)" if lp.open_ended else "")
            if lp.checkpoints:
                text += " [" + "; ".join(lp.checkpoints) + "]"
            loops.append(text)
        lines.append("  loops: " + ", ".join(loops))
    if s.cell:
        lines.append(f"  cell: {s.cell}")
    if s.limits:
        lines.append(f"  limits: {s.limits}")
    if s.source:
        src = " ".join(s.source.split())
        lines.append("  source: " + (src if len(src) <= 200 else src[:197] + "..."))
    if s.approximate:
        lines.append("  (some steps end only on a condition; their durations are guesses)")
    return "\n".join(lines)
