"""Compile a block of :class:`ChannelStep` into a MACCOR test procedure (XML).

Layout follows public MACCOR procedure files (``<MaccorTestProcedure>`` with a header and
``<ProcSteps>`` of ``<TestStep>``): StepType ``Charge``/``Dischrge``/``Rest``/``End``,
StepMode ``Current``/``Voltage``, StepValue, ``<Limits>`` (the CV voltage of a CCCV step,
the current limit of a CV step), ``<Ends>`` of EndEntry (EndType, Oper, Step to go to,
Value) and ``<Reports>`` by StepTime / Voltage / Current. Step numbers are 1-based and
written as three digits. A block is flat: its steps in order, then one ``End`` step that
every "end the block" action jumps to; loops inside a block are gotos between steps.

Sign: positive ``current_A`` charges; MACCOR takes a magnitude and the step type.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from labrig.drivers.capabilities import ChannelStep, EndCondition, InstrumentError

__all__ = ["CompiledProcedure", "compile_block", "format_duration"]

_HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<?maccor-application progid="Maccor Procedure File"?>\n'
)

#: EndType names; "Capacity" and "DV/DT" are our reading of the manual (check on the unit)
_END_TYPE = {
    "voltage": "Voltage",
    "current": "Current",
    "time": "StepTime",
    "capacity": "Capacity",
    "dvdt": "DV/DT",
}
_END_BLOCK_ACTIONS = {"end_block", "abort", "pause"}


class ProcedureError(InstrumentError):
    """A block cannot be expressed as a MACCOR procedure."""


@dataclass(frozen=True, slots=True)
class CompiledProcedure:
    """The XML and what the driver needs to read the results back."""

    xml: bytes
    steps: tuple[ChannelStep, ...]  # procedure step n (1-based) is steps[n - 1]
    end_step: int  # number of the End step

    def step_id(self, number: int) -> int | None:
        if 1 <= number <= len(self.steps):
            return self.steps[number - 1].step_id
        return None


def format_duration(seconds: float) -> str:
    """``HH:MM:SS`` (fractional seconds kept), as MACCOR writes step times."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ProcedureError(f"duration must be finite and >= 0, got {seconds!r}")
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, frac = divmod(rem, 1000)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    return text + (f".{frac:03d}".rstrip("0") if frac else "")


def _num(x: float) -> str:
    if not math.isfinite(x):
        raise ProcedureError(f"value must be finite, got {x!r}")
    return repr(float(x))


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _step_type(step: ChannelStep) -> tuple[str, str, str]:
    """(StepType, StepMode, StepValue) of one step."""
    if step.mode == "rest" or (step.mode == "cc" and step.current_A == 0.0):
        return "Rest", "", ""
    if step.mode in ("cc", "cccv"):
        if step.mode == "cccv" and step.voltage_V is None:
            raise ProcedureError(f"step {step.step_id}: cccv needs voltage_V")
        kind = "Charge" if step.current_A > 0 else "Dischrge"
        return kind, "Current", _num(abs(step.current_A))
    if step.mode == "cv":
        if step.voltage_V is None:
            raise ProcedureError(f"step {step.step_id}: cv needs voltage_V")
        discharge = step.kind == "discharge" or step.current_A < 0
        return ("Dischrge" if discharge else "Charge"), "Voltage", _num(step.voltage_V)
    raise ProcedureError(f"step {step.step_id}: unknown mode {step.mode!r}")


def _oper(step: ChannelStep, step_type: str, end: EndCondition) -> str:
    if end.quantity == "time":
        return "="
    if end.op != "cross":
        return end.op
    if end.quantity == "voltage" and step_type in ("Charge", "Dischrge"):
        return ">=" if step_type == "Charge" else "<="
    raise ProcedureError(
        f"step {step.step_id}: 'cross' on {end.quantity} needs a direction the tester "
        "can know (a charge or discharge voltage end); give >= or <="
    )


def _goto(index: int, end: EndCondition, n_steps: int, end_step: int, step_id: int) -> int:
    if end.action in _END_BLOCK_ACTIONS:
        return end_step
    if end.action == "goto":
        if end.goto is None or not 0 <= end.goto < n_steps:
            raise ProcedureError(f"step {step_id}: goto {end.goto!r} is not a step of the block")
        return end.goto + 1
    return index + 2  # next (and notify): the following step, or End after the last


def compile_block(steps: Sequence[ChannelStep], *, description: str = "") -> CompiledProcedure:
    """The MACCOR procedure for ``steps`` (raises :class:`ProcedureError` if impossible)."""
    if not steps:
        raise ProcedureError("a block needs at least one step")
    n = len(steps)
    end_step = n + 1
    if end_step > 999:
        raise ProcedureError(f"a block of {n} steps does not fit MACCOR's 3-digit step numbers")
    root = ET.Element("MaccorTestProcedure")
    header = _sub(root, "header")
    btv = _sub(header, "BuildTestVersion")
    for tag, val in (("major", "1"), ("minor", "5"), ("release", "7006"), ("build", "32043")):
        _sub(btv, tag, val)
    _sub(_sub(header, "FileFormatVersion"), "BTVersion", "11")
    _sub(_sub(header, "ProcDesc"), "desc", description)
    proc = _sub(root, "ProcSteps")
    for i, step in enumerate(steps):
        stype, smode, svalue = _step_type(step)
        ts = _sub(proc, "TestStep")
        _sub(ts, "StepType", stype)
        _sub(ts, "StepMode", smode)
        _sub(ts, "StepValue", svalue)
        limits = _sub(ts, "Limits")
        if step.mode == "cccv" and step.voltage_V is not None:
            _sub(limits, "Voltage", _num(step.voltage_V))
        if step.mode == "cv" and step.current_A != 0.0:
            _sub(limits, "Current", _num(abs(step.current_A)))
        ends = _sub(ts, "Ends")
        all_ends = list(step.ends) + list(step.cv_ends)
        if step.max_duration_s is not None:
            all_ends.append(EndCondition("time", ">=", step.max_duration_s, "next"))
        for end in all_ends:
            if end.quantity not in _END_TYPE:
                raise ProcedureError(
                    f"step {step.step_id}: the tester cannot end a step on {end.quantity!r}"
                )
            entry = _sub(ends, "EndEntry")
            _sub(entry, "EndType", _END_TYPE[end.quantity])
            _sub(entry, "SpecialType", "")
            _sub(entry, "Oper", _oper(step, stype, end))
            _sub(entry, "Step", f"{_goto(i, end, n, end_step, step.step_id):03d}")
            value = format_duration(end.value) if end.quantity == "time" else _num(end.value)
            _sub(entry, "Value", value)
        reports = _sub(ts, "Reports")
        rule = step.record
        for rtype, rval in (
            ("StepTime", rule.every_s),
            ("Voltage", rule.dV_V),
            ("Current", rule.dI_A),
        ):
            if rval is None:
                continue
            if not math.isfinite(rval) or rval <= 0:
                raise ProcedureError(f"step {step.step_id}: record interval must be > 0")
            entry = _sub(reports, "ReportEntry")
            _sub(entry, "ReportType", rtype)
            _sub(entry, "Value", format_duration(rval) if rtype == "StepTime" else _num(rval))
        _sub(ts, "Range", "A")
        _sub(ts, "StepNote", f"{step.kind} #{step.step_id}")
    last = _sub(proc, "TestStep")
    _sub(last, "StepType", "End")
    for tag in ("StepMode", "StepValue", "Limits", "Ends", "Reports", "Range", "StepNote"):
        _sub(last, tag, "" if tag in ("StepMode", "StepValue", "Range", "StepNote") else None)
    ET.indent(root, space="  ")
    xml = _HEADER + ET.tostring(root, encoding="unicode") + "\n"
    return CompiledProcedure(xml=xml.encode("utf-8"), steps=tuple(steps), end_step=end_step)
