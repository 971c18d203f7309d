"""The state of one furnace run: what the progress display, status, journal and the
end of the run read, and how a journal snapshot of it is taken and restored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.capabilities import Instrument, InstrumentError, SafetyTrip
from labrig.protocols.models import Protocol

from ..events import EventKind, EventSink, RunState, RunStatus
from ..journal import Journal
from ..run.lifecycle import SAFE_STATE_TIMEOUT_S, RunLifecycle, RunOutcome
from ..store import RunStore
from .instruments import ThermalInstruments
from .options import ThermalOptions
from .plan import ProgrammePhase, ThermalPlan
from .recorder import ThermalRecorder

__all__ = ["FurnaceRunState", "StepView", "ThermalOutcome"]


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


class FurnaceRunState(RunLifecycle):
    """A furnace run's bookkeeping on the shared lifecycle; the executor does the work."""

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
        on_progress: Callable[[Any], None] | None = None,
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
        # resuming: the phase to go on with, the programme unit
        # to re-attach to, and how long a held programme stayed held while the run was down
        self._start_phase = 0
        self._reattach: dict[str, Any] | None = None
        self._held_while_down = 0.0
        self._unit_open = False  # a journalled unit is in progress

    # ------------------------------------------------------------------ control

    @property
    def sims(self) -> dict[str, Any]:
        """The simulators of a dry run (``furnace``, ``gas``), for fault switches."""
        return self.inst.sims

    def abandon(self) -> None:
        super().abandon()
        self.recorder.close()  # rows from here on are not staged, as in a killed process

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

    async def run(self) -> ThermalOutcome:
        """Run the protocol; always ends with the furnace in its safe state."""
        outcome = await super().run()
        assert isinstance(outcome, ThermalOutcome)
        return outcome

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
        """What a resumed run takes back (see :meth:`_restore_snapshot`)."""
        step = self.current_step
        return {
            "event_seq": self.event_seq,
            "time_s": self.run_time(),
            "rows": self.recorder.rows,
            "step": None if step is None else [step.label, step.index, self._step_started],
            "last": [self.last_pv, self.last_sp, self.last_output],
            "flow_sp": dict(self.flow_sp),
            "selected": dict(self._selected),
            "settled": sorted(self._settled),
            "heated": self._heated,
            "held_s": self._held_s,
            "paused": self.state is RunState.paused,
            "planned_s": self._planned_s,
        }

    def _restore_snapshot(self, snap: dict[str, Any]) -> None:
        step = snap["step"]
        if step is not None and int(step[1]) < 0:
            step = None  # the cool-down at the end: it names its step again when it goes on
        self.current_step = None if step is None else StepView(str(step[0]), int(step[1]))
        self._step_started = 0.0 if step is None else float(step[2])
        self.last_pv, self.last_sp, self.last_output = snap["last"]
        self.flow_sp.update(snap["flow_sp"])
        self._selected = dict(snap["selected"])
        self._settled = set(snap["settled"]) & set(self.flow_sp)
        self._heated = bool(snap["heated"])
        self._held_s = float(snap["held_s"])
        self._planned_s = float(snap["planned_s"])

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
