"""Rules that need the whole protocol, each reported at its step's (or loop's) path.

- cut-off, hold and bias voltages inside ``limits.voltage_V``;
- setpoint currents within ``limits.current_abs_A``;
- chamber setpoints (and ``defaults.temperature_degC``) inside ``limits.temperature_degC``;
  furnace targets under ``limits.furnace_max_C`` and inside ``limits.temperature_degC``;
- EIS frequencies inside :data:`EIS_FREQUENCY_HZ`, the widest band any instrument labrig
  drives reaches (a station narrows it to its instruments' models: see
  ``orchestrator/run/ranges.py``);
- loops that run at most :data:`MAX_LOOP_ITERATIONS` times in all (nesting multiplies)
  and a whole protocol shorter than :data:`MAX_DURATION_S`.

:func:`protocol_issues` returns ``(path, rule)`` pairs; the loader turns each path into
a file line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from . import models as m

__all__ = [
    "EIS_FREQUENCY_HZ",
    "MAX_DURATION_S",
    "MAX_LOOP_ITERATIONS",
    "format_hertz",
    "format_quantity",
    "protocol_issues",
]

PathT = tuple[str | int, ...]

#: the widest EIS band of the instruments labrig drives (BioLogic SP-300 family: 10 µHz
#: to 7 MHz); a unit test keeps it equal to the registry's widest model
EIS_FREQUENCY_HZ = (10e-6, 7e6)
#: iterations of one loop in all, its enclosing loops' counts multiplied in
MAX_LOOP_ITERATIONS = 1_000_000
#: ten years: a protocol estimated to run longer is a mistake in its counts
MAX_DURATION_S = 10 * 365.25 * 86400.0

_PREFIXES = (
    (1e12, "T"),
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "µ"),
)


def format_quantity(value: float, unit: str) -> str:
    """``7e6, "Hz"`` -> ``7 MHz``; ``1e12, "Hz"`` -> ``1 THz``; ``0.5, "A"`` -> ``500 mA``;
    ``1e-5, "Hz"`` -> ``10 µHz``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale * (1 - 1e-12):
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_hertz(value: float) -> str:
    """A frequency with its SI prefix: ``7e6`` -> ``7 MHz``."""
    return format_quantity(value, "Hz")


def protocol_issues(protocol: m.Protocol) -> list[tuple[PathT, str]]:
    """Every whole-protocol rule a protocol breaks, as ``(path, rule)``, steps in
    document order, then loops, then the duration."""
    out: list[tuple[PathT, str]] = []
    lim = protocol.limits
    out += _default_temperature(lim, protocol.defaults.temperature_C)
    for path, step in protocol.steps_with_paths():
        out += [(path, msg) for msg in _voltages(lim, step)]
        out += [(path, msg) for msg in _current(protocol, step)]
        out += [(path, msg) for msg in _temperatures(lim, step)]
        out += [(path, msg) for msg in _frequencies(step)]
    loops = list(_loops(protocol.sequence, ("sequence",), ()))
    return out + (loops or _duration(protocol))


def _voltages(lim: m.SafetyLimits, step: Any) -> Iterator[str]:
    if lim.voltage_V is None:
        return
    lo, hi = lim.voltage_V
    volts: list[float] = [c.value for c in getattr(step, "until", []) if c.quantity == "voltage"]
    if isinstance(step, m.HoldStep):
        volts.append(step.voltage_V)
    if isinstance(step, m.CurrentStep) and step.cv is not None:
        v = step.cv_voltage_V()
        if v is not None:
            volts.append(v)
    if isinstance(step, m.EisStep) and step.bias_V is not None:
        volts.append(step.bias_V)
    for v in volts:
        if not lo <= v <= hi:
            yield f"{v:g} V is outside limits.voltage_V [{lo:g}, {hi:g}]"


def _current(protocol: m.Protocol, step: Any) -> Iterator[str]:
    top = protocol.limits.current_abs_A
    current = getattr(step, "current", None)
    if top is None or not isinstance(current, m.Current):
        return
    try:
        amps = current.amps(protocol.cell)
    except ValueError:
        return  # reported by cell_issues
    if amps > top * (1 + 1e-9):
        yield (
            (f"{current.describe()} = " if current.basis != "A" else "")
            + f"{amps * 1e3:.4g} mA is above limits.current_abs_A ({top * 1e3:.4g} mA)"
        )


def _window(celsius: float, lim: m.SafetyLimits, what: str) -> Iterator[str]:
    if lim.temperature_C is None:
        return
    lo, hi = lim.temperature_C
    if not lo <= celsius <= hi:
        yield f"{what} {celsius:g} °C is outside limits.temperature_degC [{lo:g}, {hi:g}]"


def _default_temperature(lim: m.SafetyLimits, celsius: float | None) -> list[tuple[PathT, str]]:
    if celsius is None:
        return []
    path: PathT = ("defaults", "temperature_degC")
    return [(path, msg) for msg in _window(celsius, lim, "the chamber at")]


def _temperatures(lim: m.SafetyLimits, step: Any) -> Iterator[str]:
    if isinstance(step, m.ChamberStep):
        yield from _window(step.setpoint_C, lim, "a chamber setpoint of")
    if isinstance(step, m.FurnaceStep) and step.target_C is not None:
        if lim.furnace_max_C is not None and step.target_C > lim.furnace_max_C:
            yield (f"{step.target_C:g} °C is above limits.furnace_max_C "
                   f"({lim.furnace_max_C:g} °C)")  # fmt: skip
        yield from _window(step.target_C, lim, "a furnace target of")


def _frequencies(step: Any) -> Iterator[str]:
    if not isinstance(step, m.EisStep):
        return
    f_min, f_max = EIS_FREQUENCY_HZ
    reach = (f"no instrument labrig drives reaches it (the widest range is "
             f"{format_hertz(f_min)} to {format_hertz(f_max)})")  # fmt: skip
    lo, hi = sorted((step.f_start_Hz, step.f_end_Hz))
    if hi > f_max * (1 + 1e-9):
        yield f"EIS up to {format_hertz(hi)}: {reach}"
    if lo < f_min * (1 - 1e-9):
        yield f"EIS down to {format_hertz(lo)}: {reach}"


def _loops(nodes: list[Any], prefix: PathT, outer: tuple[int, ...]) -> Iterator[tuple[PathT, str]]:
    """Loops whose iterations in all (their enclosing loops' counts multiplied) pass the
    bound; an inner loop is not reported again once an outer one is."""
    for i, node in enumerate(nodes):
        here = (*prefix, i)
        if isinstance(node, m.Group):
            yield from _loops(node.steps, (*here, "steps"), outer)
        elif isinstance(node, m.Loop):
            counts = (*outer, node.bound())
            total = math.prod(counts)
            if total > MAX_LOOP_ITERATIONS:
                product = " × ".join(f"{n:,}" for n in counts)
                nested = f" ({product} nested)" if len(counts) > 1 else ""
                yield (here, f"the loop runs {total:,} times in all{nested}: more than the "
                             f"{MAX_LOOP_ITERATIONS:,} a protocol may run")  # fmt: skip
                continue
            yield from _loops(node.steps, (*here, "steps"), counts)
            for k, cp in enumerate(node.checkpoints):
                yield from _loops(cp.steps, (*here, "checkpoints", k, "steps"), counts)


def _duration(protocol: m.Protocol) -> list[tuple[PathT, str]]:
    """The estimated run time under :data:`MAX_DURATION_S` (checked once the loops are
    within their bound: the estimate would only repeat a broken one)."""
    from .summary import estimate_duration_s, format_duration

    seconds = estimate_duration_s(protocol)
    if seconds <= MAX_DURATION_S:
        return []
    years = seconds / (365.25 * 86400.0)
    return [(("sequence",), f"the protocol would run about {format_duration(seconds)} "
                            f"({years:,.0f} years): more than the 10 years a protocol may "
                            "run; check its loop counts and step durations")]  # fmt: skip
