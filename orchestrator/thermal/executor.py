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
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from labrig.drivers.capabilities import InstrumentError, SafetyTrip

from ..events import EventKind, RunState
from ..run.lifecycle import RunAborted
from .plan import GasPhase, ProgrammePhase
from .state import FurnaceRunState, StepView, ThermalOutcome

__all__ = ["FurnaceExecutor", "StepView", "ThermalOutcome"]


class FurnaceExecutor(FurnaceRunState):
    """Runs one furnace protocol. Use ``await FurnaceExecutor(...).run()`` once.

    Shares the lifecycle of :class:`orchestrator.executor.Executor` (events, status,
    pause and abort, safe state, close: :class:`orchestrator.run.lifecycle.RunLifecycle`)
    and what the progress display and MQTT attachment read: ``progress()``,
    ``run_time()``, ``cycles``, ``current_step``, ``state``, ``status()``, ``record()``.
    """

    def _begin(self) -> None:
        if self._resume_from is not None:
            self._restore(self._resume_from)
            self._emit(EventKind.run_resumed, phase=self._start_phase, rows=self.recorder.rows)
        else:
            self._emit(
                EventKind.run_started,
                protocol=self.protocol.name,
                samples=self.store.meta.get("samples", []),
            )
            if self.journal is not None:
                self.journal.set_started(self.clock.wall(), mono=self._t0)
        self.recorder.stage_to(self.store.root, durable=self.store.durable)

    async def _work(self) -> None:
        """The phases in order, each a journalled unit, then the end (cool-down)."""
        if self._resume_from is None:
            await self._prepare()
        else:
            await self._prepare_resumed()
        self._publish_status()
        phases = self.plan.phases
        for i in range(self._start_phase, len(phases) + 1):
            phase = phases[i] if i < len(phases) else None
            self._pos = [["phase", i]]
            reattach, self._reattach = self._reattach, None
            if reattach is None:
                kind = (
                    "end"
                    if phase is None
                    else "gas"
                    if isinstance(phase, GasPhase)
                    else "programme"
                )
                self._journal_unit_start(kind)
            self._unit_open = True
            if isinstance(phase, GasPhase):
                await self._gas(phase)
            elif phase is not None:
                await self._programme(phase, reattach)
            else:
                await self._cool_down_at_end()
            self._unit_open = False
            self._journal_unit_done()
        self._set_step(None)

    def _journal_progress(self) -> None:
        """Commit where the unit in progress is (and the events so far) at each record."""
        if self.journal is not None and self._unit_open and self._unit_info is not None:
            # a unit in progress: "sent", with the snapshot a restart takes back
            self.journal.unit_start({**self._unit_info, "now": self._snapshot()})

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

    # ------------------------------------------------------------------ resume

    def _restore(self, info: dict[str, Any]) -> None:
        """Take back the journalled position and bookkeeping and the staged rows."""
        self.event_seq = int(info["max_event_seq"])
        self.recorder.restore(self.store.root)
        unit = info["unit"]
        snap: dict[str, Any] | None = None
        if unit is not None:
            done = unit["state"] == "done"
            snap = self._unit_snapshot(unit)
            self._restore_snapshot(snap)
            phase = int(unit["pos"][0][1])
            self._start_phase = phase + 1 if done else phase
            if not done and unit["kind"] == "programme":
                self._reattach = unit
            self._unit_info = {k: v for k, v in unit.items() if k not in ("state", "after", "now")}
        # run time goes on from the start, never behind a row
        last_row = self.recorder.columns["time_s"][-1] if self.recorder.rows else 0.0
        elapsed = self._restore_run_time(
            info["started"], max(last_row, snap["time_s"] if snap else 0.0)
        )
        self._next_record = self._t0 + last_row + self.options.poll_s
        if snap is not None and snap["paused"]:
            self._held_while_down = elapsed - float(snap["time_s"])

    async def _prepare_resumed(self) -> None:
        """Check the furnace after a restart; re-attach to the programme it runs only if
        it is the one this run loaded (read back and compared with the journal)."""
        f = self.inst.furnace
        pv = await f.read_temperature()
        lim = self.protocol.limits.furnace_max_C
        if lim is not None and pv > lim:
            raise RunAborted(f"furnace at {pv:.1f} °C, above limits.furnace_max_C", RunState.failed)
        self.last_pv = pv
        unit = self._reattach
        if unit is None:
            return
        status = await f.program_status()
        prog = unit.get("programme")
        if prog is None:  # stopped before the programme was loaded: load it again
            if status in ("running", "hold", "holdback"):
                raise RunAborted(
                    f"after the restart the furnace controller runs a programme ({status}) "
                    "this run had not started; refusing to re-attach",
                    RunState.failed,
                )
            self._reattach = None
            return
        if status == "reset":
            raise RunAborted(
                "after the restart the furnace controller's programme is reset (it was "
                "stopped while the run was down); refusing to go on",
                RunState.failed,
            )
        got = [asdict(seg) for seg in await f.read_program()]
        if got != prog["segments"]:
            raise RunAborted(
                "after the restart the furnace controller holds another programme than the "
                f"one this run loaded: {_describe(got)} instead of {_describe(prog['segments'])}",
                RunState.failed,
            )
        self._emit(EventKind.notify, message=f"re-attached to the furnace programme ({status})")
        if status == "hold":
            self._held_s += self._held_while_down
            self._pause_requested = True
            self._pause_reason = "the programme was held when the run stopped"

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
        self._journal_progress()
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

    async def _programme(self, phase: ProgrammePhase, reattach: Any = None) -> None:
        """Load and run one programme (or re-attach to it: ``reattach`` is its journalled
        unit), wait for it to complete, then for the cool it ends with."""
        f = self.inst.furnace
        if reattach is None:
            t_start, timeline = await self._start_programme(phase)
        else:
            prog = reattach["programme"]
            timeline = phase.timeline(float(prog["start_C"]))
            t_start = self._t0 + float(prog["started_s"])
        self._heated = True
        self._prog = (t_start, timeline, phase)
        self._tag_programme(self.clock.now())
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

    async def _start_programme(
        self, phase: ProgrammePhase
    ) -> tuple[float, list[tuple[float, float, Any, float]]]:
        f = self.inst.furnace
        if await f.program_status() != "reset":
            await f.safe_state()  # a completed programme must be reset before a new load
        start = self.last_pv if self.last_pv is not None else await f.read_temperature()
        timeline = phase.timeline(start)
        await f.load_program(phase.controller_segments())
        if self.journal is not None and self._unit_info is not None:
            # what a restart will find on the controller, journalled before it runs
            loaded = await f.read_program()
            self._unit_info["programme"] = {
                "segments": [asdict(seg) for seg in loaded],
                "start_C": start,
                "started_s": self.run_time(),
            }
            self.journal.unit_start(self._unit_info)
        await f.run_program()
        self._held_s = 0.0
        return self.clock.now(), timeline

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
        times = self.recorder.columns["time_s"]
        if not times or self.run_time() > times[-1]:  # the last row, unless just taken
            await self._record(self.last_pv if self.last_pv is not None else math.nan)


def _unit_kind(phase: GasPhase | ProgrammePhase | None) -> str:
    if phase is None:
        return "end"
    return "gas" if isinstance(phase, GasPhase) else "programme"


def _describe(segments: list[dict[str, Any]]) -> str:
    """A programme in a few words: ``ramp 400 @0.1667 K/s, dwell 7200 s, end``."""
    parts = []
    for seg in segments:
        words = [str(seg["kind"])]
        if seg.get("target_C") is not None:
            words.append(f"{seg['target_C']:g}")
        if seg.get("rate_K_per_s") is not None:
            words.append(f"@{seg['rate_K_per_s']:.4g} K/s")
        if seg.get("duration_s") is not None:
            words.append(f"{seg['duration_s']:g} s")
        parts.append(" ".join(words))
    return ", ".join(parts)
