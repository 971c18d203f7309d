"""Turn protocol steps into instrument steps.

Protocol steps speak the lab's language (C-rates, "until 3.68 V", charge/discharge);
instrument steps (:class:`drivers.capabilities.ChannelStep`) speak the cycler's: signed
amperes (positive charges), end conditions in SI with an op, a record rule, a hard stop.
The executor groups consecutive cycler steps into blocks the instrument runs by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from labrig.drivers.capabilities import ChannelStep, EndAction, EndCondition, EndOp, RecordRule
from labrig.protocols.models import (
    CellSpec,
    Condition,
    CurrentStep,
    HoldStep,
    Protocol,
    PulseStep,
    RestStep,
)
from labrig.protocols.models import RecordRule as ProtocolRecordRule

__all__ = ["CompileError", "CompiledStep", "StepCompiler", "is_cycler_step"]

CyclerStep = RestStep | CurrentStep | HoldStep | PulseStep


class CompileError(ValueError):
    """A protocol step cannot be turned into an instrument step (e.g. a C-rate, no cell)."""


def is_cycler_step(step: object) -> bool:
    return isinstance(step, RestStep | CurrentStep | HoldStep | PulseStep)


@dataclass(frozen=True, slots=True)
class CompiledStep:
    """An instrument step and what it means to the run."""

    channel_step: ChannelStep
    source: CyclerStep
    c_rate: float | None  # the step's current as a C-rate (None for rests/holds)
    label: str


_OP: dict[str, EndOp] = {">": ">=", ">=": ">=", "<": "<=", "<=": "<=", "cross": "cross"}


class StepCompiler:
    """Compiles protocol steps for one cell, handing out run-unique step ids."""

    def __init__(self, protocol: Protocol, cell: CellSpec | None, first_step_id: int = 1) -> None:
        self.protocol = protocol
        self.cell = cell
        self.next_id = first_step_id
        try:
            self.one_c_A: float | None = cell.one_c_A() if cell is not None else None
        except ValueError:
            self.one_c_A = None

    # ------------------------------------------------------------------ helpers

    def _record(self, rule: ProtocolRecordRule | None) -> RecordRule:
        base = self.protocol.defaults.record
        every = rule.every_s if rule and rule.every_s is not None else base.every_s
        dv = rule.dV_V if rule and rule.dV_V is not None else base.dV_V
        di = rule.dI_A if rule and rule.dI_A is not None else base.dI_A
        return RecordRule(every_s=every, dV_V=dv, dI_A=di)

    def _end(self, cond: Condition) -> EndCondition:
        try:
            value = cond.si_value(self.cell)
        except ValueError as exc:
            raise CompileError(str(exc)) from None
        quantity = cond.quantity
        if quantity == "dtdt":
            raise CompileError("dT/dt end conditions are for chamber and furnace steps")
        if cond.goto is not None:
            raise CompileError(
                f"goto {cond.goto!r}: jumps to labels are not supported yet; "
                "use end_loop, abort, pause or next"
            )
        # 'end_loop': the instrument ends the block, then the executor leaves the loop.
        action: EndAction = "end_block" if cond.action == "end_loop" else cond.action
        return EndCondition(quantity=quantity, op=_OP[cond.op], value=value, action=action)

    def _ends(self, until: list[Condition], duration_s: float | None) -> tuple[EndCondition, ...]:
        ends = [self._end(c) for c in until]
        if duration_s is not None:
            ends.append(EndCondition("time", ">=", duration_s, "next"))
        return tuple(ends)

    def _amps(self, step: CurrentStep | PulseStep) -> float:
        try:
            amps = step.current.amps(self.cell)
        except ValueError as exc:
            raise CompileError(str(exc)) from None
        return amps if step.direction == "charge" else -amps

    def _c_rate(self, amps: float) -> float | None:
        if self.one_c_A is None or self.one_c_A <= 0:
            return None
        return abs(amps) / self.one_c_A

    def _take_id(self) -> int:
        sid = self.next_id
        self.next_id += 1
        return sid

    def _label(self, step: CyclerStep) -> str:
        if step.text:
            return step.text
        if step.label:
            return step.label
        return step.step

    # ------------------------------------------------------------------ compile

    def compile(self, step: CyclerStep) -> list[CompiledStep]:
        """One protocol step becomes one instrument step (a pulse train becomes several)."""
        temp = step.temperature_C if step.temperature_C is not None else None
        record = self._record(step.record)
        if isinstance(step, RestStep):
            cs = ChannelStep(
                step_id=self._take_id(),
                mode="rest",
                kind="ocv" if step.measure_ocv else "rest",
                ends=self._ends(step.until, step.duration_s),
                record=record,
                temperature_C=temp,
            )
            return [CompiledStep(cs, step, None, self._label(step))]
        if isinstance(step, CurrentStep):
            amps = self._amps(step)
            ends = self._ends(step.until, step.duration_s)
            if step.cv is not None:
                cv_v = step.cv_voltage_V()
                cv_ends = self._ends(step.cv.until, step.cv.duration_s)
                # In CC-CV the voltage cut-off switches to CV instead of ending the step.
                ends = tuple(e for e in ends if e.quantity != "voltage")
                cs = ChannelStep(
                    step_id=self._take_id(),
                    mode="cccv",
                    kind=step.direction,
                    current_A=amps,
                    voltage_V=cv_v,
                    ends=ends,
                    cv_ends=cv_ends,
                    record=record,
                    temperature_C=temp,
                )
            else:
                cs = ChannelStep(
                    step_id=self._take_id(),
                    mode="cc",
                    kind=step.direction,
                    current_A=amps,
                    ends=ends,
                    record=record,
                    temperature_C=temp,
                )
            return [CompiledStep(cs, step, self._c_rate(amps), self._label(step))]
        if isinstance(step, HoldStep):
            cs = ChannelStep(
                step_id=self._take_id(),
                mode="cv",
                kind="hold",
                voltage_V=step.voltage_V,
                ends=self._ends(step.until, step.duration_s),
                record=record,
                temperature_C=temp,
            )
            return [CompiledStep(cs, step, None, self._label(step))]
        return list(self._pulses(step, record, temp))

    def _pulses(
        self, step: PulseStep, record: RecordRule, temp: float | None
    ) -> Iterator[CompiledStep]:
        amps = self._amps(step)
        # A pulse train without a count runs until its condition; bound it so a block
        # stays finite (a GITT titration is at most a few hundred pulses).
        count = step.repeat if step.repeat is not None else 1000
        stop = tuple(
            EndCondition(e.quantity, e.op, e.value, "end_block")
            for e in (self._end(c) for c in step.until)
        )
        for _ in range(count):
            pulse = ChannelStep(
                step_id=self._take_id(),
                mode="cc",
                kind="pulse_" + step.direction,
                current_A=amps,
                ends=(*stop, EndCondition("time", ">=", step.pulse_s, "next")),
                record=record,
                temperature_C=temp,
            )
            yield CompiledStep(pulse, step, self._c_rate(amps), self._label(step))
            if step.rest_s > 0:
                rest = ChannelStep(
                    step_id=self._take_id(),
                    mode="rest",
                    kind="rest",
                    ends=(EndCondition("time", ">=", step.rest_s, "next"),),
                    record=record,
                    temperature_C=temp,
                )
                yield CompiledStep(rest, step, None, self._label(step) + " (rest)")
