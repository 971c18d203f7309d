"""Every step of a protocol within what the instruments of its station position reach.

Each registry entry declares the ranges an instrument reaches as its station options set
it up (:class:`~orchestrator.instruments.InstrumentLimits`: EIS frequencies, current, setpoint
temperatures, flow). :func:`position_problems` walks a protocol's steps with the
instruments a position uses and lists each step an instrument cannot run: an EIS asking
for 7 MHz of a VMP3 (1 MHz), a current above a channel's range, a chamber or furnace
setpoint outside what it holds, a flow above a controller's full scale; or a step whose
instrument the position lacks. ``labrig validate --station`` and ``labrig run`` refuse
such a protocol before any run directory exists (the driver checks again when the step
runs). Each problem carries the step's path in the protocol document, so the commands
name its file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from labrig.protocols import models as m
from labrig.protocols.checks import format_quantity

from ..instruments import InstrumentLimits, entry
from ..station import Position, StationConfig

__all__ = ["RangeProblem", "format_quantity", "position_problems"]

Path_ = tuple[str | int, ...]

#: relative slack on comparisons (a figure written as "7 MHz" is 7e6 exactly, but
#: computed currents carry rounding)
_RTOL = 1e-9


@dataclass(frozen=True, slots=True)
class RangeProblem:
    """A step (at ``path`` in the protocol document) that an instrument cannot run."""

    path: Path_
    message: str


@dataclass(frozen=True, slots=True)
class _Inst:
    name: str
    limits: InstrumentLimits

    def said(self) -> str:
        what = f" ({self.limits.model})" if self.limits.model else ""
        return f"instrument {self.name!r}{what}"

    def hint(self, figure: str) -> str:
        """Where the station changes ``figure`` (a field of the limits)."""
        option = self.limits.settings.get(figure)
        return f" (the station's instruments.{self.name}.{option} sets it)" if option else ""


def _instrument(station: StationConfig, ref: str | None) -> _Inst | None:
    if ref is None:
        return None
    name, _ = station.resolve(ref)
    inst = station.instruments[name]
    return _Inst(name, entry(inst.driver).limits_for(inst.options))


def position_problems(
    protocol: m.Protocol, station: StationConfig, position: Position
) -> list[RangeProblem]:
    """What the instruments of ``position`` (a station position) cannot run of
    ``protocol``, step by step in document order."""
    cycler = _instrument(station, position.cycler)
    impedance = _instrument(station, position.impedance)
    chamber = _instrument(station, position.chamber)
    furnace = _instrument(station, position.furnace)
    gases = {line: _instrument(station, ref) for line, ref in position.gas.items()}
    out: list[RangeProblem] = []
    temp = protocol.defaults.temperature_C
    if temp is not None and chamber is not None:
        out += _temperature(("defaults", "temperature_degC"), "the chamber at", temp, chamber)
    for path, step in protocol.steps_with_paths():
        for message in _step(protocol, step, position.name, cycler, impedance, chamber,
                             furnace, gases):  # fmt: skip
            out.append(RangeProblem(path, message))
    return out


def _step(
    protocol: m.Protocol, step: Any, where: str, cycler: _Inst | None, impedance: _Inst | None,
    chamber: _Inst | None, furnace: _Inst | None, gases: dict[str, _Inst | None],
) -> Iterator[str]:  # fmt: skip
    if isinstance(step, m.EisStep):
        if impedance is None:
            yield f"an EIS step, but position {where!r} has no impedance channel"
            return
        yield from _eis(step, impedance)
    elif isinstance(step, m.CurrentStep | m.PulseStep) and cycler is not None:
        try:
            amps = step.current.amps(protocol.cell)
        except ValueError:
            return  # the protocol's own check names what the cell lacks
        yield from _current(f"{step.current.describe()} =", amps, cycler)
    elif isinstance(step, m.ChamberStep):
        if chamber is None:
            yield f"a chamber setpoint, but position {where!r} has no chamber"
            return
        for problem in _temperature((), "the chamber at", step.setpoint_C, chamber):
            yield problem.message
    elif isinstance(step, m.FurnaceStep) and step.target_C is not None and furnace is not None:
        for problem in _temperature((), "the furnace to", step.target_C, furnace):
            yield problem.message
    elif isinstance(step, m.GasStep):
        yield from _gas(step, where, gases)


def _eis(step: m.EisStep, inst: _Inst) -> Iterator[str]:
    lo, hi = sorted((step.f_start_Hz, step.f_end_Hz))
    band = inst.limits.frequency_Hz
    if band is not None:
        f_min, f_max = band
        reach = f"{format_quantity(f_min, 'Hz')} to {format_quantity(f_max, 'Hz')}"
        hint = inst.hint("frequency_Hz")
        if hi > f_max * (1 + _RTOL):
            yield (f"EIS up to {format_quantity(hi, 'Hz')} is above the "
                   f"{format_quantity(f_max, 'Hz')} that {inst.said()} reaches: its range is "
                   f"{reach}{hint}")  # fmt: skip
        if lo < f_min * (1 - _RTOL):
            yield (f"EIS down to {format_quantity(lo, 'Hz')} is below the "
                   f"{format_quantity(f_min, 'Hz')} that {inst.said()} reaches: its range is "
                   f"{reach}{hint}")  # fmt: skip
    if step.amplitude_A is not None:
        amps = step.amplitude_A + abs(step.bias_A or 0.0)
        yield from _current("a GEIS amplitude plus bias of", amps, inst)


def _current(what: str, amps: float, inst: _Inst) -> Iterable[str]:
    top = inst.limits.current_A
    if top is not None and abs(amps) > top * (1 + _RTOL):
        return [
            f"{what} {format_quantity(abs(amps), 'A')} is above the "
            f"{format_quantity(top, 'A')} that {inst.said()} sources{inst.hint('current_A')}"
        ]
    return []


def _temperature(path: Path_, what: str, celsius: float, inst: _Inst) -> list[RangeProblem]:
    band = inst.limits.temperature_C
    if band is None or band[0] <= celsius <= band[1]:
        return []
    return [
        RangeProblem(
            path,
            f"{what} {celsius:g} °C is outside the {band[0]:g}..{band[1]:g} °C that "
            f"{inst.said()} holds{inst.hint('temperature_C')}",
        )
    ]


def _gas(step: m.GasStep, where: str, gases: dict[str, _Inst | None]) -> Iterator[str]:
    if step.line not in gases:
        have = ", ".join(sorted(gases)) or "none"
        yield f"gas line {step.line!r}, but position {where!r} has no such line (has: {have})"
        return
    inst = gases[step.line]
    top = inst.limits.flow_sccm if inst is not None else None
    if inst is not None and top is not None and step.flow_sccm > top * (1 + _RTOL):
        yield (f"{step.flow_sccm:g} sccm of {step.line} is above the {top:g} sccm full "
               f"scale of {inst.said()}{inst.hint('flow_sccm')}")  # fmt: skip
