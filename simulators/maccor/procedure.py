"""The simulated tester's reading of a MACCOR test procedure file (XML).

Independent of any driver: this is what the firmware does with a ``.000`` file. The
procedure is flattened into the channel engine's steps: ``Do n`` … ``Loop n`` (with a
``Loop Cnt`` end) is unrolled, ``AdvCycle`` advances the cycle counter of the steps after
it, ``End`` ends the test. Every flat step remembers its procedure step number (1-based),
which is what the tester reports as ``Step``.

End targets are procedure step numbers: the End step ends the test, the next step is
"next", anything else a goto (resolved to the next occurrence of that step forward, or
the first one if it lies behind).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from labrig.simulators.cell.steps import Action, Op, Quantity, SimEnd, SimRecord, SimStep

__all__ = ["FlatProcedure", "ProcedureError", "parse_procedure", "parse_step_time"]

MAX_FLAT_STEPS = 200_000

_END_QUANTITY: dict[str, Quantity] = {
    "voltage": "voltage",
    "current": "current",
    "steptime": "time",
    "capacity": "capacity",
    "ah": "capacity",
    "dv/dt": "dvdt",
}


class ProcedureError(ValueError):
    """The procedure file cannot be run (the text says where and why)."""


@dataclass(frozen=True, slots=True)
class FlatProcedure:
    """Engine steps with, for each, its procedure step number and cycle number."""

    steps: tuple[SimStep, ...]
    numbers: tuple[int, ...]
    cycles: tuple[int, ...]
    end_number: int


@dataclass(slots=True)
class _RawEnd:
    quantity: Quantity
    op: str
    target: int
    value: float


@dataclass(slots=True)
class _RawStep:
    number: int
    stype: str
    mode: str
    value: float | None
    v_limit: float | None
    i_limit: float | None
    ends: list[_RawEnd]
    loop_count: int | None
    record: SimRecord


def parse_step_time(text: str) -> float:
    """``HH:MM:SS[.fff]`` (empty fields are 0, e.g. ``::.01``) to seconds."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ProcedureError(f"step time {text!r} is not HH:MM:SS")
    try:
        h, m, s = (float(p) if p.strip() else 0.0 for p in parts)
    except ValueError:
        raise ProcedureError(f"step time {text!r} is not HH:MM:SS") from None
    total = h * 3600 + m * 60 + s
    if not math.isfinite(total) or total < 0:
        raise ProcedureError(f"step time {text!r} is out of range")
    return total


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _float(text: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ProcedureError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ProcedureError(f"{where}: {text!r} is not finite")
    return v


def _parse_steps(xml: str) -> list[_RawStep]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ProcedureError(f"procedure is not well-formed XML: {exc}") from None
    if root.tag != "MaccorTestProcedure":
        raise ProcedureError(f"root element is <{root.tag}>, not <MaccorTestProcedure>")
    proc = root.find("ProcSteps")
    if proc is None:
        raise ProcedureError("procedure has no <ProcSteps>")
    out: list[_RawStep] = []
    for number, ts in enumerate(proc.findall("TestStep"), start=1):
        where = f"step {number:03d}"
        stype = " ".join(_text(ts.find("StepType")).split())
        mode = _text(ts.find("StepMode"))
        value_text = _text(ts.find("StepValue"))
        value = _float(value_text, f"{where} StepValue") if value_text else None
        limits = ts.find("Limits")
        v_limit = i_limit = None
        if limits is not None:
            if _text(limits.find("Voltage")):
                v_limit = _float(_text(limits.find("Voltage")), f"{where} Limits/Voltage")
            if _text(limits.find("Current")):
                i_limit = _float(_text(limits.find("Current")), f"{where} Limits/Current")
        ends: list[_RawEnd] = []
        loop_count = None
        for entry in ts.findall("Ends/EndEntry"):
            etype = _text(entry.find("EndType")).lower()
            op = _text(entry.find("Oper"))
            target_text = _text(entry.find("Step"))
            val_text = _text(entry.find("Value"))
            if etype == "loop cnt":
                loop_count = int(_float(val_text, f"{where} Loop Cnt"))
                continue
            if etype not in _END_QUANTITY:
                raise ProcedureError(f"{where}: unknown EndType {etype!r}")
            try:
                target = int(target_text)
            except ValueError:
                raise ProcedureError(f"{where}: end goes to {target_text!r}") from None
            q = _END_QUANTITY[etype]
            val = parse_step_time(val_text) if q == "time" else _float(val_text, f"{where} end")
            if op not in ("=", ">=", "<="):
                raise ProcedureError(f"{where}: unknown Oper {op!r}")
            ends.append(_RawEnd(q, op, target, val))
        every = dv = di = None
        for rep in ts.findall("Reports/ReportEntry"):
            rtype = _text(rep.find("ReportType")).lower()
            rval = _text(rep.find("Value"))
            if rtype == "steptime":
                every = parse_step_time(rval)
            elif rtype == "voltage":
                dv = _float(rval, f"{where} report")
            elif rtype == "current":
                di = _float(rval, f"{where} report")
            else:
                raise ProcedureError(f"{where}: unknown ReportType {rtype!r}")
        try:
            record = SimRecord(every_s=every or None, dV_V=dv or None, dI_A=di or None)
        except ValueError as exc:
            raise ProcedureError(f"{where}: {exc}") from None
        out.append(_RawStep(number, stype, mode, value, v_limit, i_limit, ends, loop_count, record))
    if not out:
        raise ProcedureError("procedure has no steps")
    return out


def _unroll(raw: list[_RawStep]) -> tuple[list[tuple[_RawStep, int]], list[tuple[int, int]]]:
    """Flat (step, cycle) list and occurrences (procedure number -> flat index)."""
    flat: list[tuple[_RawStep, int]] = []
    occurrences: list[tuple[int, int]] = []
    cycle = 0

    def run(lo: int, hi: int) -> None:
        nonlocal cycle
        i = lo
        while i < hi:
            st = raw[i]
            occurrences.append((st.number, len(flat)))
            kind = st.stype.lower()
            if kind.startswith("do "):
                tag = kind[3:].strip()
                j = next(
                    (k for k in range(i + 1, hi) if raw[k].stype.lower() == f"loop {tag}"),
                    None,
                )
                if j is None:
                    raise ProcedureError(f"step {st.number:03d}: Do {tag} has no Loop {tag}")
                count = raw[j].loop_count
                if count is None or count < 1:
                    raise ProcedureError(f"step {raw[j].number:03d}: Loop needs a Loop Cnt >= 1")
                for _ in range(count):
                    run(i + 1, j)
                occurrences.append((raw[j].number, len(flat)))
                i = j + 1
                continue
            if kind == "advcycle":
                cycle += 1
            elif kind == "end":
                return
            elif kind.startswith("loop "):
                raise ProcedureError(f"step {st.number:03d}: {st.stype} without its Do")
            else:
                flat.append((st, cycle))
                if len(flat) > MAX_FLAT_STEPS:
                    raise ProcedureError("procedure unrolls to too many steps")
            i += 1

    run(0, len(raw))
    return flat, occurrences


def _sim_step(index: int, st: _RawStep, ends: tuple[SimEnd, ...]) -> SimStep:
    where = f"step {st.number:03d}"
    kind = st.stype.lower()
    mode = st.mode.lower()
    try:
        if kind == "rest":
            return SimStep(index, "rest", "rest", ends=ends, record=st.record)
        if kind not in ("charge", "dischrge"):
            raise ProcedureError(f"{where}: unknown StepType {st.stype!r}")
        sign = 1.0 if kind == "charge" else -1.0
        label = "charge" if sign > 0 else "discharge"
        if st.value is None:
            raise ProcedureError(f"{where}: {st.stype} needs a StepValue")
        if mode == "current":
            if st.v_limit is not None:
                return SimStep(
                    index, "cccv", label, current_A=sign * abs(st.value),
                    voltage_V=st.v_limit, ends=ends, record=st.record,
                )  # fmt: skip
            return SimStep(
                index, "cc", label, current_A=sign * abs(st.value), ends=ends, record=st.record
            )
        if mode == "voltage":
            i_lim = sign * abs(st.i_limit) if st.i_limit is not None else 0.0
            return SimStep(
                index, "cv", label, current_A=i_lim, voltage_V=st.value,
                ends=ends, record=st.record,
            )  # fmt: skip
        raise ProcedureError(f"{where}: unknown StepMode {st.mode!r}")
    except ValueError as exc:
        if isinstance(exc, ProcedureError):
            raise
        raise ProcedureError(f"{where}: {exc}") from None


def parse_procedure(xml: str) -> FlatProcedure:
    """Parse and flatten a procedure; raises :class:`ProcedureError` with the reason."""
    raw = _parse_steps(xml)
    end_number = next((s.number for s in raw if s.stype.lower() == "end"), len(raw) + 1)
    flat, occurrences = _unroll(raw)
    if not flat:
        raise ProcedureError("procedure has no step that runs")
    n = len(flat)
    steps: list[SimStep] = []
    for i, (st, _cycle) in enumerate(flat):
        ends: list[SimEnd] = []
        for e in st.ends:
            action: Action
            goto: int | None
            if e.target == end_number or e.target > len(raw):
                action, goto = "end_block", None
            else:
                hits = [f for num, f in occurrences if num == e.target]
                if not hits:
                    raise ProcedureError(f"step {st.number:03d}: end goes to {e.target:03d}")
                fwd = [f for f in hits if f > i]
                target = fwd[0] if fwd else hits[0]
                if target >= n:
                    action, goto = "end_block", None
                elif target == i + 1:
                    action, goto = "next", None
                else:
                    action, goto = "goto", target
            op: Op = (
                ">="
                if e.quantity == "time" or e.op == ">="
                else ("<=" if e.op == "<=" else "cross")
            )
            ends.append(SimEnd(e.quantity, op, e.value, action, goto))
        steps.append(_sim_step(i, st, tuple(ends)))
    return FlatProcedure(
        steps=tuple(steps),
        numbers=tuple(st.number for st, _ in flat),
        cycles=tuple(c for _, c in flat),
        end_number=end_number,
    )
