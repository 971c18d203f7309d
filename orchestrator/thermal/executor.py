"""The furnace executor: runs a furnace protocol on one furnace position.

The controller carries out each programme (ramps, dwells, cools); the host sets the gas
flows, loads and starts programmes, polls, records and supervises:

- every ``safety_period_s`` it reads the temperature: a thermocouple break, a PV above
  ``limits.furnace_max_C``, above the programme's peak by ``overtemp_margin_K``, or above
  a rising setpoint by that margin trips the run;
- every ``poll_s`` it also reads setpoint, output and flows, writes a row, and checks that
  required gas flows and that heating has not been lost (the independent limit or the
  element);
- a trip puts the furnace in its safe state (output 0, programme reset), leaves the gas
  flowing (the purge), records the event and ends the run; nothing resumes by itself.

Every run ends with the furnace in its safe state; a run that ends while the furnace is
hot keeps its gas on and waits for it to cool first.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.capabilities import Instrument, InstrumentError, SafetyTrip
from labrig.protocols.models import Protocol

from ..events import EventKind, EventSink, RunState, RunStatus
from ..journal import Journal
from ..run.lifecycle import SAFE_STATE_TIMEOUT_S, RunAborted, RunLifecycle, RunOutcome
from ..store import RunStore
from .instruments import ThermalInstruments
from .options import ThermalOptions
from .plan import GasPhase, ProgrammePhase, ThermalPlan
from .recorder import ThermalRecorder

__all__ = ["FurnaceExecutor", "ThermalOutcome"]


@dataclass
class ThermalOutcome(RunOutcome):
    """A run outcome with the furnace run's summary (also in ``summary.json``)."""

    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Cycles:
    cycle: int = 0  # furnace runs have no cycles; the progress display shows 0


@dataclass(frozen=True)
class StepView:
    """The step in progress, as the progress display and status show it."""

    label: str
    index: int


class FurnaceExecutor(RunLifecycle):
    """Runs one furnace protocol. Use ``await FurnaceExecutor(...).run()`` once.

    Shares the lifecycle of :class:`orchestrator.executor.Executor` (events, status,
    pause and abort, safe state, close: :class:`orchestrator.run.lifecycle.RunLifecycle`)
    and what the progress display and MQTT attachment read: ``progress()``,
    ``run_time()``, ``cycles``, ``current_step``, ``state``, ``status()``, ``record()``.
    """

    def __init__(
        self,
        *,
        run_id: str,
        protocol: Protocol,
        plan: ThermalPlan,
        channel: str,
        instruments: ThermalInstruments,
        store: RunStore,
        options: ThermalOptions,
        journal: Journal | None = None,
        sinks: Sequence[EventSink] = (),
        on_progress: Callable[[FurnaceExecutor], None] | None = None,
    ) -> None:
        super().__init__(
            run_id=run_id,
            protocol=protocol,
            channel=channel,
            store=store,
            journal=journal,
            sinks=sinks,
            on_progress=on_progress,
        )
        self.plan = plan
        self.inst = instruments
        self.options = options
        self.cycles = _Cycles()
        self.current_step: StepView | None = None
        self.recorder = ThermalRecorder(list(instruments.gases))
        self.summary: dict[str, Any] = {}
        self.last_pv: float | None = None
        self.last_sp: float | None = None
        self.last_output: float | None = None
        self.flow_sp: dict[str, float] = {line: 0.0 for line in instruments.gases}
        self._settled: set[str] = set()
        self._low: dict[str, int] = {}
        self._heat_loss = 0
        self._prev_pv: float | None = None
        self._next_record = 0.0
        self._planned_s = 1.0
        self._heated = False
        self._pause_reason = ""
        self._hold_deadline: float | None = None
        self._prog: tuple[float, list[tuple[float, float, Any, float]], ProgrammePhase] | None = (
            None
        )
        self._held_s = 0.0
        self._selected: dict[str, str] = {}
        self._step_started: float = 0.0
        self._purge: str | None = None  # the line a trip switches on (see _safe_state_all)

    # ------------------------------------------------------------------ control

    @property
    def sims(self) -> dict[str, Any]:
        """The simulators of a dry run (``furnace``, ``gas``), for fault switches."""
        return self.inst.sims

    def request_pause(self) -> None:
        self._pause_reason = "operator pause"
        super().request_pause()

    def progress(self) -> float:
        if self.state in (RunState.finished, RunState.aborted, RunState.failed):
            return 1.0
        return min(0.99, self.run_time() / self._planned_s)

    # ------------------------------------------------------------------ events

    def status(self) -> RunStatus:
        p = self.progress()
        eta = self.run_time() * (1 - p) / p if 0 < p < 1 else None
        return RunStatus(
            run_id=self.run_id,
            channel=self.channel,
            protocol=self.protocol.name,
            state=self.state,
            step=self.current_step.label if self.current_step else None,
            step_index=self.current_step.index if self.current_step else None,
            cycle=0,
            voltage_V=None,
            current_A=None,
            temperature_C=self.last_pv,
            run_time_s=self.run_time(),
            eta_s=eta,
            updated=self.clock.wall(),
            cell_id=None,
        )

    def _set_step(self, index: int | None) -> None:
        cur = self.current_step.index if self.current_step else None
        if index == cur:
            return
        now = self.run_time()
        if self.current_step is not None:
            self._emit(
                EventKind.step_ended,
                step=self.current_step.index,
                label=self.current_step.label,
                duration_s=now - self._step_started,
            )
        if index is None:
            self.current_step = None
            return
        self.current_step = StepView(self.plan.labels[index], index)
        self._step_started = now
        self._emit(EventKind.step_started, step=index, label=self.current_step.label)

    # ------------------------------------------------------------------ run

    async def run(self) -> ThermalOutcome:
        """Run the protocol; always ends with the furnace in its safe state."""
        outcome = await super().run()
        assert isinstance(outcome, ThermalOutcome)
        return outcome

    def _begin(self) -> None:
        self._next_record = self._t0
        self._emit(
            EventKind.run_started,
            protocol=self.protocol.name,
            samples=self.store.meta.get("samples", []),
        )

    async def _work(self) -> None:
        await self._prepare()
        self._publish_status()
        for phase in self.plan.phases:
            if isinstance(phase, GasPhase):
                await self._gas(phase)
            else:
                await self._programme(phase)
        await self._cool_down_at_end()
        self._set_step(None)

    def _instrument_failed(self, exc: InstrumentError) -> str:
        if isinstance(exc, SafetyTrip):
            self._emit(EventKind.fault, message=str(exc), instrument=self.inst.furnace.name)
            return f"safety trip: {exc}"
        return super()._instrument_failed(exc)

    def _outcome(self) -> ThermalOutcome:
        return ThermalOutcome(
            run_id=self.run_id,
            state=self.state,
            reason=self.reason,
            cycles=0,
            rows=self.recorder.rows,
            run_time_s=self.run_time(),
            summary=self.summary,
        )

    def _snapshot(self) -> dict[str, Any]:
        return {"event_seq": self.event_seq}

    async def _prepare(self) -> None:
        f = self.inst.furnace
        status = await f.program_status()
        if status in ("running", "hold", "holdback"):
            raise RunAborted(
                f"the furnace controller is already running a programme ({status}); "
                "refusing to start",
                RunState.failed,
            )
        pv = await f.read_temperature()
        lim = self.protocol.limits.furnace_max_C
        if lim is not None and pv > lim:
            raise RunAborted(f"furnace at {pv:.1f} °C, above limits.furnace_max_C", RunState.failed)
        self.last_pv = pv
        self._planned_s = max(1.0, self.plan.planned_s(pv))
        await self._record(pv)

    # ------------------------------------------------------------------ polling

    def _sleep_s(self) -> float:
        to_record = self._next_record - self.clock.now()
        period = self.options.safety_period_s
        return to_record if 1e-6 < to_record < period else period

    async def _tick(self) -> None:
        """One supervision poll: control requests, temperature checks, maybe a record."""
        self._check_control()
        try:
            pv = await self.inst.furnace.read_temperature()
        except SafetyTrip as exc:
            self._emit(
                EventKind.limit_trip,
                quantity="thermocouple",
                value=None,
                limit=None,
                message=str(exc),
            )
            raise
        self.last_pv = pv
        self._check_temperature(pv)
        if self.clock.now() >= self._next_record - 1e-6:
            await self._record(pv)

    def _check_temperature(self, pv: float) -> None:
        o = self.options
        lim = self.protocol.limits.furnace_max_C
        reason, limit = "", math.nan
        if lim is not None and pv > lim:
            reason, limit = f"above limits.furnace_max_C ({lim:g} °C)", lim
        elif self._heated and pv > self.plan.peak_C + o.overtemp_margin_K:
            limit = self.plan.peak_C + o.overtemp_margin_K
            reason = f"more than {o.overtemp_margin_K:g} K above the programme's peak"
        elif (
            self.last_sp is not None
            and self._prev_pv is not None
            and pv > self.last_sp + o.overtemp_margin_K
            and pv > self._prev_pv + 0.05
        ):
            limit = self.last_sp + o.overtemp_margin_K
            reason = f"rising more than {o.overtemp_margin_K:g} K above the setpoint"
        self._prev_pv = pv
        if reason:
            self._emit(
                EventKind.limit_trip, quantity="furnace_temperature_C", value=pv, limit=limit
            )
            raise RunAborted(f"over-temperature: {pv:.1f} °C, {reason}")

    async def _record(self, pv: float) -> None:
        f = self.inst.furnace
        now = self.clock.now()
        self.last_sp = sp = await f.read_setpoint()
        self.last_output = out = await f.read_output()
        flows = {line: await g.read_flow() for line, g in self.inst.gases.items()}
        if self._prog is not None:
            self._tag_programme(now)
        step = self.current_step.index if self.current_step else -1
        self.recorder.add(now - self._t0, step, sp, pv, out, flows, self.flow_sp)
        self._next_record = max(self._next_record + self.options.poll_s, now + 1e-3)
        if self.store.durable:
            self.recorder.maybe_flush(self.store.root, now, self.options.flush_every_s)
        self._check_heating(pv, sp, out)
        self._check_gas(flows)
        self._publish_status()

    def _check_heating(self, pv: float, sp: float, out: float) -> None:
        o = self.options
        falling = self._prev_pv is not None and pv < self._prev_pv
        if out >= o.heat_loss_output_pct and pv < sp - 5.0 and falling:
            self._heat_loss += 1
        else:
            self._heat_loss = 0
        if self._heat_loss >= o.heat_loss_polls:
            self._emit(
                EventKind.fault,
                message=f"heating lost: output {out:.0f} % but {pv:.1f} °C and falling",
                instrument=self.inst.furnace.name,
            )
            raise RunAborted(
                "heating lost (independent over-temperature limit tripped or heater failed)",
                RunState.failed,
            )

    def _check_gas(self, flows: dict[str, float]) -> None:
        if self.state is RunState.paused:
            return
        o = self.options
        for line, sp in self.flow_sp.items():
            if sp <= 0 or line not in self._settled:
                self._low.pop(line, None)
                continue
            if flows[line] < sp * o.gas_loss_fraction:
                self._low[line] = self._low.get(line, 0) + 1
            else:
                self._low.pop(line, None)
            if self._low.get(line, 0) >= o.gas_loss_polls:
                self._low.pop(line, None)
                self._gas_lost(line, flows[line], sp)

    def _gas_lost(self, line: str, flow: float, sp: float) -> None:
        policy = self.protocol.limits.on_violation
        self._emit(
            EventKind.limit_trip,
            quantity=f"flow_{line}_sccm",
            value=flow,
            limit=sp,
            action="hold" if policy == "pause" else "abort",
        )
        if policy == "pause":
            self._pause_requested = True
            self._pause_reason = f"gas {line} stopped flowing ({flow:.1f} of {sp:g} sccm)"
            self._hold_deadline = self.clock.now() + self.options.gas_hold_timeout_s
            return
        raise RunAborted(f"gas {line} stopped flowing: {flow:.1f} sccm of {sp:g} sccm")

    def _tag_programme(self, now: float) -> None:
        assert self._prog is not None
        t_start, timeline, _ = self._prog
        elapsed = now - t_start - self._held_s
        index = timeline[-1][2].step_index if timeline else None
        for start, end, seg, _ in timeline:
            if elapsed < end or (start == end and elapsed <= start):
                index = seg.step_index
                break
        if index is not None:
            self._set_step(index)

    async def _wait_until(
        self, cond: Callable[[], Awaitable[bool]], timeout_s: float, what: str
    ) -> None:
        """Poll (supervising) until ``cond``; InstrumentError after ``timeout_s``."""
        end = self.clock.now() + timeout_s
        while True:
            await self._tick()
            await self._pause_point()
            if await cond():
                return
            if self.clock.now() > end + self._held_s:
                raise InstrumentError(f"{what} did not happen within {timeout_s / 3600:.2f} h")
            await asyncio.sleep(self._sleep_s())

    async def _pause_point(self) -> None:
        if not self._pause_requested or self.state is not RunState.running:
            return
        f = self.inst.furnace
        running = self._prog is not None
        if running:
            await f.hold_program()
        self.state = RunState.paused
        reason = self._pause_reason
        self._emit(EventKind.paused, reason=reason)
        self._publish_status()
        t_hold = self.clock.now()
        try:
            while self._pause_requested:
                if self._hold_deadline is not None and self.clock.now() > self._hold_deadline:
                    raise RunAborted(f"{reason}; not resumed within the hold time")
                await asyncio.sleep(self._sleep_s())
                await self._tick()
        finally:
            self._held_s += self.clock.now() - t_hold
        self._hold_deadline = None
        self._low.clear()
        if running:
            await f.run_program()  # resumes a held programme where it stopped
        self.state = RunState.running
        self._emit(EventKind.resumed)
        self._publish_status()

    # ------------------------------------------------------------------ phases

    async def _gas(self, phase: GasPhase) -> None:
        step = phase.step
        line = step.line
        gas = self.inst.gases[line]
        self._set_step(phase.step_index)
        if phase.trailing and step.flow_sccm < self.flow_sp[line]:
            await self._wait_cool(self._end_threshold(), "cool-down before closing gas")
        name = step.gas or self.inst.gas_names.get(line)
        if name is not None and step.flow_sccm > 0 and self._selected.get(line) != name:
            await gas.select_gas(name)
            self._selected[line] = name
        self._settled.discard(line)
        await gas.set_flow(step.flow_sccm)
        self.flow_sp[line] = step.flow_sccm
        tol = max(self.options.gas_tolerance * step.flow_sccm, self.options.gas_abs_sccm)

        async def reached() -> bool:
            return abs(await gas.read_flow() - step.flow_sccm) <= tol

        await self._wait_until(
            reached,
            self.options.gas_settle_timeout_s,
            f"gas {line} reaching {step.flow_sccm:g} sccm",
        )
        self._settled.add(line)
        if step.wait_s > 0:
            t_end = self.clock.now() + step.wait_s

            async def waited() -> bool:
                return self.clock.now() >= t_end - 1e-6

            await self._wait_until(waited, step.wait_s + 60.0, f"wait after {step.line}")

    async def _programme(self, phase: ProgrammePhase) -> None:
        f = self.inst.furnace
        if await f.program_status() != "reset":
            await f.safe_state()  # a completed programme must be reset before a new load
        start = self.last_pv if self.last_pv is not None else await f.read_temperature()
        timeline = phase.timeline(start)
        await f.load_program(phase.controller_segments())
        await f.run_program()
        self._heated = True
        t_start = self.clock.now()
        self._held_s = 0.0
        self._prog = (t_start, timeline, phase)
        self._tag_programme(t_start)
        planned = timeline[-1][1] if timeline else 0.0

        async def complete() -> bool:
            if self.clock.now() - t_start - self._held_s < planned - 1e-6:
                return False
            return await f.program_status() == "complete"

        try:
            await self._wait_until(complete, planned * 1.5 + 3600.0, "the furnace programme")
        finally:
            self._prog = None
        if phase.cool_to_C is not None:
            assert phase.cool_step_index is not None
            self._set_step(phase.cool_step_index)
            await self._wait_cool(phase.cool_to_C, f"cooling below {phase.cool_to_C:g} °C")

    def _end_threshold(self) -> float:
        last_cool = [p.cool_to_C for p in self.plan.phases if isinstance(p, ProgrammePhase)]
        cools = [c for c in last_cool if c is not None]
        return max(self.options.end_cool_C, cools[-1]) if cools else self.options.end_cool_C

    async def _wait_cool(self, below_C: float, what: str) -> None:
        async def cool() -> bool:
            return self.last_pv is not None and self.last_pv <= below_C

        if not await cool():
            await self._wait_until(cool, self.options.cool_timeout_s, what)

    async def _cool_down_at_end(self) -> None:
        """The protocol is done: if still hot, heater off and wait under gas."""
        threshold = self._end_threshold()
        if self.last_pv is not None and self.last_pv > threshold and self._heated:
            await self.inst.furnace.safe_state()
            self._set_step(None)
            self.current_step = StepView(f"Cooling below {threshold:g} °C under gas", -1)
            self._emit(EventKind.notify, message=f"waiting under gas until below {threshold:g} °C")
            await self._wait_cool(threshold, f"cooling below {threshold:g} °C")
            self.current_step = None
        await self._record(self.last_pv if self.last_pv is not None else math.nan)

    # ------------------------------------------------------------------ ending

    def safe_targets(self) -> list[Instrument]:
        """The furnace (output 0, programme reset); unless the run finished, every gas
        line too (kept flowing: the purge), one switched on if all were closed and the
        furnace is hot."""
        if self.state is RunState.finished:
            return [self.inst.furnace]
        return [self.inst.furnace, *self.inst.gases.values()]

    async def _safe_state_all(self) -> None:
        flowing = any(sp > 0 for sp in self.flow_sp.values())
        hot = self.last_pv is None or self.last_pv > self.options.end_cool_C
        purge = self.options.purge_line
        self._purge = purge if not flowing and hot and purge in self.inst.gases else None
        await super()._safe_state_all()

    async def _make_safe(self, inst: Instrument) -> None:
        line = self._purge
        if line is None or inst is not self.inst.gases[line]:
            await super()._make_safe(inst)
            return
        async with asyncio.timeout(SAFE_STATE_TIMEOUT_S):
            await asyncio.shield(self.inst.gases[line].set_flow(self.options.purge_sccm))
        self.flow_sp[line] = self.options.purge_sccm
        self._emit(EventKind.notify, message=f"purge {line} switched on")

    def _closing(self) -> None:
        if self.current_step is not None and self.current_step.index >= 0:
            self._set_step(None)
        self.current_step = None
        self.summary = self.recorder.finish(self.store.root, self.plan, self.state, self.reason)

    def _closed(self) -> None:
        self.store.update_meta(rows=self.recorder.rows, summary="summary.json")
