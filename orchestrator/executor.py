"""The executor: walks one protocol on one cell through capability interfaces.

Consecutive cycler steps are handed to the cycler channel as one block; the instrument
ends steps on their own conditions and enforces the limits (as cycler firmware does).
The executor sequences blocks, runs checkpoints on other instruments (EIS on the
impedance channel while the cycler channel is at open circuit), counts cycles, watches
the run envelope on every record, journals its position, and emits events to sinks.
Every run ends with every instrument it used in its safe state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import (
    BlockResult,
    ChannelLimits,
    ChannelState,
    EisRequest,
    ImpedanceChannel,
    InstrumentError,
    RecordBatch,
    StepEnd,
)
from labrig.protocols.models import (
    CellSpec,
    ChamberStep,
    EisStep,
    FurnaceStep,
    GasStep,
    Group,
    Loop,
    LoopCondition,
    Protocol,
)

from .clock import Clock
from .compile import CompiledStep, StepCompiler, is_cycler_step
from .cycles import CycleCounter, CycleFigures
from .events import Event, EventKind, EventSink, RunState, RunStatus, SinkFanout, Telemetry
from .journal import Journal
from .run.bindings import RunBindings
from .run.limits import check_resumed_limits
from .store import RunStore
from .trips import trip_reason

__all__ = ["Executor", "RunAborted", "RunBindings", "RunOptions", "RunOutcome", "count_steps"]

log = logging.getLogger(__name__)

SAFE_STATE_ATTEMPTS = 3
SAFE_STATE_TIMEOUT_S = 10.0


class RunAborted(Exception):
    """The run was aborted (by an operator, a limit trip, or an end action)."""

    def __init__(self, reason: str, state: RunState = RunState.aborted) -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state


class _EndLoop(Exception):
    pass


async def _safe_state_with_retries(inst: Any) -> None:
    """``inst.safe_state()`` under a deadline, tried again if the answer did not come in
    time: when a whole station stops at once, the host can be too busy to read replies
    for a while, and an instrument left running is worse than a late stop."""
    late: list[asyncio.Future[None]] = []  # earlier attempts, still waiting for an answer
    try:
        for attempt in range(SAFE_STATE_ATTEMPTS):
            call = asyncio.ensure_future(inst.safe_state())
            try:
                async with asyncio.timeout(SAFE_STATE_TIMEOUT_S):
                    await asyncio.shield(call)
                return
            except TimeoutError:
                late.append(call)
                if attempt == SAFE_STATE_ATTEMPTS - 1:
                    raise
                name = getattr(inst, "name", inst)
                log.warning("safe state of %s: no answer yet, asking again", name)
    finally:
        for call in late:  # an answer came to a later attempt: the earlier are moot
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await call


@dataclass
class RunOptions:
    poll_s: float = 10.0  # how often the instrument is polled while a block runs
    collect_s: float | None = None  # how often records are collected (default: poll_s)
    # longest wait between polls when the block's steps show it will run much longer
    # (drivers.polling); None polls every poll_s
    max_poll_s: float | None = None
    # loop iterations handed to the instrument as one block (dry runs: fewer round trips;
    # on hardware 1, so pause and abort act between cycles)
    batch_iterations: int = 1
    telemetry_every_s: float = 1.0
    flush_every_s: float = 60.0  # wall seconds between forced data flushes on hardware


@dataclass
class RunOutcome:
    run_id: str
    state: RunState
    reason: str | None
    cycles: int
    rows: int
    run_time_s: float


def count_steps(nodes: Sequence[Any]) -> int:
    """How many instrument-level steps a node list expands to (loops at their bound)."""
    total = 0
    for n in nodes:
        if isinstance(n, Loop):
            per = count_steps(n.steps)
            bound = n.bound()
            extra = 0
            for cp in n.checkpoints:
                fires = sum(1 for i in range(1, bound + 1) if cp.fires_at(i))
                extra += fires * count_steps(cp.steps)
            total += per * bound + extra
        elif isinstance(n, Group):
            total += count_steps(n.steps)
        else:
            reps = getattr(n, "repeat", None)
            if n.step == "pulse":
                total += (reps or 1) * (2 if n.rest_s > 0 else 1)
            else:
                total += 1
    return total


class Executor:
    """Runs one protocol on one cell. Use ``await Executor(...).run()`` once."""

    def __init__(
        self,
        *,
        run_id: str,
        protocol: Protocol,
        cell: CellSpec | None,
        channel: str,
        bindings: RunBindings,
        store: RunStore,
        journal: Journal | None = None,
        sinks: Sequence[EventSink] = (),
        options: RunOptions | None = None,
        on_progress: Callable[[Executor], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.protocol = protocol
        self.cell = cell
        self.channel = channel
        self.bind = bindings
        self.store = store
        self.journal = journal
        self.options = options or RunOptions()
        self.out = SinkFanout(sinks)
        self.on_progress = on_progress
        self.compiler = StepCompiler(protocol, cell)
        self.cycles = CycleCounter()
        self.state = RunState.pending
        self.reason: str | None = None
        self.steps_planned = max(1, count_steps(protocol.sequence))
        self.steps_done = 0
        self.block_id = 0
        self.event_seq = 0
        self.last_record_seq = -1
        self.current_step: CompiledStep | None = None
        self.current_counts = True
        self.last_voltage: float | None = None
        self.last_current: float | None = None
        self.last_temperature: float | None = None
        self._t0 = 0.0
        self._clock: Clock | None = None
        self._abort_requested: str | None = None
        self._abandoned = False
        # awaited after the safe state of a cancelled run, before its final writes
        self.before_final_writes: Callable[[], Awaitable[None]] | None = None
        self._last_time = 0.0
        self._pause_requested = False
        self._resume = asyncio.Event()
        self._cam_mass_g: float | None = None
        if cell is not None:
            m = cell.cam_mass_mg_value()
            self._cam_mass_g = m * 1e-3 if m is not None else None
        self._pos: list[Any] = []
        self._resume_from: dict[str, Any] | None = None
        self._resumed_unit: dict[str, Any] | None = None
        self._replay_expect: collections.deque[tuple[Any, ...]] = collections.deque()
        self._unit_info: dict[str, Any] | None = None
        self.stored_seq = -1  # newest record seq already in the run's data
        self._block_map: dict[int, CompiledStep] = {}
        self._seen_steps: set[int] = set()
        self._ended_cycles: list[CycleFigures] = []
        self._step_cycle: dict[int, CycleFigures] = {}
        self._open_step: list[Any] | None = None  # [step_id, last step charge seen]
        self._block_label: str | None = None
        self._step_charge_hw: dict[int, float] = {}
        self._last_telemetry = -math.inf

    # ------------------------------------------------------------------ control

    def request_abort(self, reason: str = "operator abort") -> None:
        self._abort_requested = reason
        self._resume.set()

    def abandon(self) -> None:
        """Make the next cancellation behave like a killed process: no safe state, no
        final writes. For crash-recovery tests and drills; never needed in operation."""
        self._abandoned = True
        self.store.abandon()

    def request_pause(self) -> None:
        self._pause_requested = True
        self._resume.clear()

    def request_resume(self) -> None:
        self._pause_requested = False
        self._resume.set()

    @property
    def clock(self) -> Clock:
        assert self._clock is not None
        return self._clock

    def run_time(self) -> float:
        return self.clock.now() - self._t0 if self._clock is not None else 0.0

    def progress(self) -> float:
        return min(1.0, self.steps_done / self.steps_planned)

    # ------------------------------------------------------------------ events

    def record(self, kind: EventKind, **data: Any) -> Event:
        """Record an event from outside the run (an operator command, a notice)."""
        return self._emit(kind, **data)

    def _emit(self, event_kind: EventKind, /, **data: Any) -> Event:
        if self._replay_expect and event_kind != EventKind.run_resumed:
            # A resumed run re-derives the events of the unit it re-attached to; those
            # the journal already holds are not recorded or published again.
            key = _event_key(event_kind, data)
            if key == self._replay_expect[0]:
                self._replay_expect.popleft()
                return Event(self.run_id, self.channel, -1, event_kind, 0.0, 0.0, data)
            self._replay_expect.clear()  # the story diverged: everything from here is new
        self.event_seq += 1
        e = Event(
            run_id=self.run_id,
            channel=self.channel,
            seq=self.event_seq,
            kind=event_kind,
            wall_time=self.clock.wall(),
            run_time_s=self.run_time(),
            data=data,
        )
        self.store.append_event(e)
        if self.journal is not None:
            self.journal.log_event(e)
        self.out.event(e)
        return e

    def status(self) -> RunStatus:
        eta = None
        p = self.progress()
        if 0 < p < 1:
            eta = self.run_time() * (1 - p) / p
        return RunStatus(
            run_id=self.run_id,
            channel=self.channel,
            protocol=self.protocol.name,
            state=self.state,
            step=self.current_step.label if self.current_step else None,
            step_index=self.current_step.channel_step.step_id if self.current_step else None,
            cycle=self.cycles.cycle,
            voltage_V=self.last_voltage,
            current_A=self.last_current,
            temperature_C=self.last_temperature,
            run_time_s=self.run_time(),
            eta_s=eta,
            updated=self.clock.wall(),
            cell_id=self.cell.cell_id if self.cell else None,
        )

    def _publish_status(self) -> None:
        self.out.status(self.status())
        if self.on_progress is not None:
            self.on_progress(self)

    # ------------------------------------------------------------------ run

    async def run(self) -> RunOutcome:
        """Run the protocol from the start, or from the journal when ``resume`` was set."""
        self._clock = Clock()
        self._t0 = self._clock.now()
        self.state = RunState.running
        position: list[Any] | None = None
        if self._resume_from is not None:
            position = self._restore(self._resume_from)
            self._emit(EventKind.run_resumed, position=position)
        else:
            self._emit(
                EventKind.run_started, protocol=self.protocol.name, cell=_cell_dict(self.cell)
            )
            if self.journal is not None:
                self.journal.set_started(self.clock.wall())
        self._publish_status()
        try:
            if position is None:
                await self._prepare()
            else:
                await self._prepare_resumed()
            await self._run_nodes(self.protocol.sequence, True, position)
            self._finish_cycle()
            self.state = RunState.finished
        except RunAborted as exc:
            self.state = exc.state
            self.reason = exc.reason
        except InstrumentError as exc:
            self.state = RunState.failed
            self.reason = f"instrument error: {exc}"
            self._emit(EventKind.fault, message=str(exc))
        except asyncio.CancelledError:
            if self._abandoned:
                raise  # as if the process died: nothing more is sent or written
            self.state = RunState.aborted
            self.reason = "cancelled"
            await self._safe_state_all()
            if self.before_final_writes is not None:
                # a station stopping at once: every run's instruments safe before any
                # run's final writes hold the event loop
                await self.before_final_writes()
            self._close(final=True)
            raise
        except (OSError, sqlite3.Error) as exc:
            self.state = RunState.failed
            self.reason = f"storage failed: {exc}"
            log.error("run %s: storage failed, instruments to their safe state: %s",
                      self.run_id, exc)  # fmt: skip
        except Exception as exc:
            self.state = RunState.failed
            self.reason = f"{type(exc).__name__}: {exc}"
            log.exception("run %s failed", self.run_id)
        await self._safe_state_all()
        self._close(final=True)
        return RunOutcome(
            run_id=self.run_id,
            state=self.state,
            reason=self.reason,
            cycles=len(self.store.cycles),
            rows=self.store.rows_written,
            run_time_s=self.run_time(),
        )

    def _close(self, *, final: bool) -> None:
        if self.state in (RunState.running, RunState.paused):
            self.state = RunState.failed
        # Storage can be what failed (a full disk): the instruments are already safe,
        # so report what could not be written instead of crashing on it.
        try:
            self._emit(EventKind.run_ended, state=self.state.value, reason=self.reason)
        except (OSError, sqlite3.Error) as exc:
            self._storage_failed(exc)
        self._publish_status()
        try:
            self.store.finish(self.state, self.reason)
        except (OSError, sqlite3.Error) as exc:
            self._storage_failed(exc)
        if self.journal is not None:
            try:
                self.journal.set_state(self.state.value, self.reason)
            except (OSError, sqlite3.Error) as exc:
                self._storage_failed(exc)

    def _storage_failed(self, exc: BaseException) -> None:
        log.error("run %s: could not write its results: %s", self.run_id, exc)
        if self.state == RunState.finished:
            self.state = RunState.failed
        note = f"storage failed: {exc}"
        if self.reason is None:
            self.reason = note
        elif note not in self.reason:
            self.reason = f"{self.reason}; {note}"

    async def _safe_state_all(self) -> None:
        """Every instrument the run used to its safe state, each under its own deadline."""
        targets: list[Any] = [self.bind.cycler]
        if self.bind.impedance is not None:
            targets.append(self.bind.impedance)
        targets.extend(self.bind.extra_safe)
        for inst in targets:
            try:
                await _safe_state_with_retries(inst)
            except Exception as exc:  # keep going: every instrument gets its chance
                why = (
                    f"no answer within {SAFE_STATE_TIMEOUT_S * SAFE_STATE_ATTEMPTS:g} s"
                    if isinstance(exc, TimeoutError)
                    else str(exc) or type(exc).__name__
                )
                name = getattr(inst, "name", type(inst).__name__)
                log.error("safe state of %s failed: %s", name, why)
                self._emit(EventKind.fault, message=f"safe state of {name} failed: {why}")

    async def _prepare(self) -> None:
        """Write the instrument's limits and read them back; refuse to start on mismatch."""
        lim = self.protocol.limits
        if lim.voltage_V is not None and lim.current_abs_A is not None:
            # Cyclers hold voltage and current limits; the temperature envelope is the
            # chamber's alarm plus supervision of every record here.
            wanted = ChannelLimits(lim.voltage_V[0], lim.voltage_V[1], lim.current_abs_A)
            await self.bind.cycler.set_limits(wanted)
            got = await self.bind.cycler.get_limits()
            if not wanted.matches(got):
                raise RunAborted(
                    f"instrument limits read back {got} differ from the protocol's {wanted}",
                    RunState.failed,
                )
        temp = self.protocol.defaults.temperature_C
        if temp is not None and self.bind.chamber is not None:
            await self._chamber(ChamberStep(setpoint_C=temp))

    # ------------------------------------------------------------------ walking

    # Positions are lists of JSON-friendly steps from the protocol's root to a unit (a
    # block of cycler steps, or one EIS/chamber node): ["n", index] in a node list, and
    # ["it", iteration, part] inside a loop, part being "b" (the body), "cb<k>" or
    # "ca<k>" (checkpoint k before or after the body). The journal stores the position of
    # the unit in progress; a resumed run walks straight to it.

    async def _run_nodes(
        self, nodes: Sequence[Any], counts: bool = True, resume: list[Any] | None = None
    ) -> None:
        i = 0
        sub: list[Any] | None = None
        if resume:
            i, sub = int(resume[0][1]), resume[1:]
        while i < len(nodes):
            node = nodes[i]
            self._pos.append(["n", i])
            try:
                if is_cycler_step(node):
                    j = i
                    while j < len(nodes) and is_cycler_step(nodes[j]):
                        j += 1
                    await self._run_block(list(nodes[i:j]), counts, sub)
                    i = j - 1
                elif isinstance(node, Loop):
                    await self._run_loop(node, counts, sub)
                elif isinstance(node, Group):
                    await self._run_nodes(node.steps, counts, sub)
                elif isinstance(node, EisStep):
                    await self._unit("eis", node, sub)
                elif isinstance(node, ChamberStep):
                    await self._unit("chamber", node, sub)
                elif isinstance(node, FurnaceStep | GasStep):
                    raise RunAborted(
                        "furnace and gas steps need a furnace station (the thermal instruments)",
                        RunState.failed,
                    )
                else:  # pragma: no cover - the models admit nothing else
                    raise RunAborted(f"unknown node {node!r}", RunState.failed)
            finally:
                self._pos.pop()
            sub = None
            await self._safe_point()
            i += 1

    async def _run_loop(self, loop: Loop, counts: bool, resume: list[Any] | None) -> None:
        label = loop.label or "loop"
        outer_label = self._block_label
        try:
            await self._loop_iterations(loop, label, counts, resume)
        finally:
            self._block_label = outer_label

    @staticmethod
    def _parts(loop: Loop, it: int) -> list[tuple[str, Any]]:
        parts: list[tuple[str, Any]] = [
            (f"cb{k}", cp)
            for k, cp in enumerate(loop.checkpoints)
            if cp.position == "before" and cp.fires_at(it)
        ]
        parts.append(("b", None))
        parts += [
            (f"ca{k}", cp)
            for k, cp in enumerate(loop.checkpoints)
            if cp.position == "after" and cp.fires_at(it)
        ]
        return parts

    async def _loop_iterations(
        self, loop: Loop, label: str, counts: bool, resume: list[Any] | None
    ) -> None:
        it = 1
        part0: str | None = None
        sub: list[Any] | None = None
        if resume:
            it, part0, sub = int(resume[0][1]), str(resume[0][2]), resume[1:]
        bound = loop.bound()
        while it <= bound:
            self._block_label = label
            last = it  # the last iteration this pass covers (several when batched)
            try:
                for part, cp in self._parts(loop, it):
                    if part.startswith("ca"):
                        continue  # after-checkpoints run after the pass, at `last`
                    if part0 is not None and part != part0:
                        continue
                    part0 = None
                    self._pos.append(["it", it, part])
                    try:
                        if cp is not None:
                            await self._checkpoint(cp, label, it, counts, sub)
                        else:
                            last = self._batch_end(loop, it)
                            body = list(loop.steps) * (last - it + 1)
                            await self._run_nodes(body, counts, sub)
                    finally:
                        self._pos.pop()
                    sub = None
                for part, cp in self._parts(loop, last):
                    if not part.startswith("ca"):
                        continue
                    if part0 is not None and part != part0:
                        continue
                    part0 = None
                    self._pos.append(["it", last, part])
                    try:
                        await self._checkpoint(cp, label, last, counts, sub)
                    finally:
                        self._pos.pop()
                    sub = None
                part0 = None
            except _EndLoop:
                return
            if loop.until and self._loop_done(loop.until):
                self._emit(EventKind.notify, message=f"{label}: end condition met", iteration=last)
                return
            it = last + 1

    def _batch_end(self, loop: Loop, it: int) -> int:
        """The last iteration to hand the instrument in one block with iteration ``it``.

        A loop of plain cycler steps with no run-time end condition can go to the
        instrument several iterations at a time (as a cycler runs its own loops), up to
        the next checkpoint; ``RunOptions.batch_iterations`` sets how many.
        """
        n = self.options.batch_iterations
        if n <= 1 or loop.until or not all(is_cycler_step(s) for s in loop.steps):
            return it
        end = min(loop.bound(), it + n - 1)
        for f in range(it, end + 1):
            if f > it and any(
                cp.position == "before" and cp.fires_at(f) for cp in loop.checkpoints
            ):
                return f - 1
            if any(cp.position == "after" and cp.fires_at(f) for cp in loop.checkpoints):
                return f
        return end

    async def _checkpoint(
        self, cp: Any, label: str, it: int, counts: bool, resume: list[Any] | None
    ) -> None:
        name = cp.label or f"{label} checkpoint"
        if resume is None:
            self._emit(EventKind.checkpoint_started, checkpoint=name, iteration=it)
        self._block_label = name
        await self._run_nodes(cp.steps, counts and cp.counts_as_cycle, resume)
        self._block_label = label
        self._emit(EventKind.checkpoint_done, checkpoint=name, iteration=it)

    async def _unit(self, kind: str, node: Any, resume: list[Any] | None) -> None:
        """Run one non-block node as a journalled unit (resumable by its policy)."""
        if resume is not None and self._resumed_unit is not None:
            unit, self._resumed_unit = self._resumed_unit, None
            if unit["state"] == "done":
                return
            if kind == "eis":
                policy = node.on_interrupt
                self._emit(EventKind.notify, message=f"EIS interrupted by a restart: {policy}")
                if policy == "skip":
                    self._journal_unit_done()
                    return
                if policy == "abort":
                    raise RunAborted("an EIS sweep was interrupted and its policy is abort")
        self._journal_unit_start(kind)
        if kind == "eis":
            await self._eis(node)
        else:
            await self._chamber(node)
        self._journal_unit_done()

    def _loop_done(self, conds: list[LoopCondition]) -> bool:
        rows = {r["cycle"]: r for r in self.store.cycles}
        cur = self.cycles.current.row(self._cam_mass_g)
        latest = cur if cur["discharge_capacity_mAh"] > 0 else rows.get(self.cycles.cycle - 1)
        if latest is None:
            return False
        rows[cur["cycle"]] = cur
        for c in conds:
            key = {
                "discharge_capacity": "discharge_capacity_mAh",
                "charge_capacity": "charge_capacity_mAh",
                "coulombic_efficiency": "coulombic_efficiency_pct",
                "mean_discharge_voltage": "mean_discharge_voltage_V",
            }[c.quantity]
            v = latest.get(key)
            if v is None:
                continue
            if c.fraction is not None:
                ref = rows.get(c.reference_cycle or 1, {}).get(key)
                if ref is None:
                    continue
                threshold = c.fraction * ref
            else:
                assert c.value is not None
                threshold = c.value
                if key.endswith("_mAh"):
                    threshold *= 1e3  # value is in Ah
                elif key.endswith("_pct"):
                    threshold *= 100.0 if threshold <= 1.0 else 1.0
            if _compare(v, c.op, threshold):
                return True
        return False

    def _check_control(self) -> None:
        if self._abort_requested is not None:
            raise RunAborted(self._abort_requested)

    async def _safe_point(self) -> None:
        """Between blocks: the cycler is at open circuit; honour pause and abort here."""
        self._check_control()
        if not self._pause_requested:
            return
        self.state = RunState.paused
        self._emit(EventKind.paused)
        self._publish_status()
        await self._resume.wait()
        self._check_control()
        self.state = RunState.running
        self._emit(EventKind.resumed)
        self._publish_status()

    # ------------------------------------------------------------------ blocks

    async def _run_block(
        self, steps: list[Any], counts: bool, resume: list[Any] | None = None
    ) -> None:
        self._check_control()
        reattach = False
        if resume is not None and self._resumed_unit is not None:
            unit, self._resumed_unit = self._resumed_unit, None
            if unit["state"] == "done":
                return  # finished before the restart; its effects are in the snapshot
            # The instrument may still be running this block: compile it with the same
            # ids and re-attach instead of starting it again.
            self.compiler.next_id = int(unit["first_step_id"])
            self.block_id = int(unit["block_id"]) - 1
            reattach = True
        first_step_id = self.compiler.next_id
        compiled: list[CompiledStep] = []
        for s in steps:
            compiled.extend(self.compiler.compile(s))
        self.block_id += 1
        block_id = self.block_id
        self._block_map = {c.channel_step.step_id: c for c in compiled}
        self._seen_steps = set()
        self.current_counts = counts
        if not reattach:
            # (a re-attached block keeps the journal entry of its first start, so a
            # second restart still knows which events the block has produced)
            self._journal_unit_start("block", block_id=block_id, first_step_id=first_step_id)
        channel_steps = [c.channel_step for c in compiled]
        if reattach:
            await self.bind.cycler.attach_block(
                block_id, channel_steps, time_base_s=self._last_time
            )
        else:
            await self.bind.cycler.start_block(block_id, channel_steps)
        result = await self._supervise_block()
        await self._collect()  # the tail of the block's records
        self._after_block(result)

    async def _supervise_block(self) -> BlockResult:
        cycler = self.bind.cycler
        opts = self.options
        wait = asyncio.ensure_future(cycler.wait_block(opts.poll_s, max_poll_s=opts.max_poll_s))
        collect_s = self.options.collect_s or self.options.poll_s
        try:
            while True:
                done, _ = await asyncio.wait({wait}, timeout=collect_s)
                if done:
                    return wait.result()
                await self._collect()
                self._publish_status()
                if self._abort_requested is not None:
                    await cycler.safe_state()
                    raise RunAborted(self._abort_requested)
        finally:
            if not wait.done():
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError, InstrumentError):
                    await wait

    async def _collect(self) -> None:
        batch = await self.bind.cycler.read_records(self.last_record_seq)
        if len(batch) == 0:
            return
        self._ingest(batch)

    def _ingest(self, batch: RecordBatch) -> None:
        """Assign cycles and capacities to records, check the envelope, store them."""
        # Drop anything already seen (a re-read after a reconnect) to keep rows unique.
        keep = batch.seq > self.last_record_seq
        if not keep.all():
            batch = batch.select(keep)
            if len(batch) == 0:
                return
        n = len(batch)
        cycle_col = np.empty(n, dtype=np.int32)
        charge_col = np.empty(n)
        discharge_col = np.empty(n)
        kind_col = np.empty(n, dtype=object)
        sid = batch.step_id
        # records arrive in step order: split where the step id changes
        cuts = np.flatnonzero(np.diff(sid)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [n]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            step_id = int(sid[a])
            cs = self._block_map.get(step_id)
            kind = cs.channel_step.kind if cs is not None else "unknown"
            if step_id not in self._seen_steps:
                self._seen_steps.add(step_id)
                self._start_step(cs, kind)
            ch, dis = self.cycles.cumulative(kind, self.current_counts, batch.step_charge_Ah[a:b])
            if self._open_step is not None:
                self._open_step[1] = float(batch.step_charge_Ah[b - 1])
            cycle_col[a:b] = self.cycles.cycle
            charge_col[a:b] = ch
            discharge_col[a:b] = dis
            kind_col[a:b] = kind
        self._check_envelope(batch)
        rows: dict[str, npt.NDArray[Any]] = {
            "time_s": batch.time_s,
            "cycle": cycle_col,
            "step": batch.step_id.astype(np.int32),
            "step_type": kind_col,
            "current_A": batch.current_A,
            "voltage_V": batch.voltage_V,
            "charge_capacity_Ah": charge_col,
            "discharge_capacity_Ah": discharge_col,
            "temperature_C": batch.temperature_C,
            "record_seq": batch.seq,
        }
        if self.stored_seq >= int(batch.seq[0]):
            # re-read after a restart: these rows were counted again for the bookkeeping,
            # but only the ones the run's data does not hold yet are stored
            new = batch.seq > self.stored_seq
            rows = {k: v[new] for k, v in rows.items()}
        self.store.append_records(rows)
        self.last_record_seq = int(batch.seq[-1])
        self._last_time = float(batch.time_s[-1])
        self.last_voltage = float(batch.voltage_V[-1])
        self.last_current = float(batch.current_A[-1])
        self.last_temperature = float(batch.temperature_C[-1])
        now = self.run_time()
        if now - self._last_telemetry >= self.options.telemetry_every_s:
            self._last_telemetry = now
            self.out.telemetry(
                Telemetry(
                    run_id=self.run_id,
                    channel=self.channel,
                    wall_time=self.clock.wall(),
                    run_time_s=now,
                    voltage_V=self.last_voltage,
                    current_A=self.last_current,
                    temperature_C=self.last_temperature,
                    cycle=self.cycles.cycle,
                    step_index=self.current_step.channel_step.step_id
                    if self.current_step
                    else None,
                )
            )

    def _start_step(self, cs: CompiledStep | None, kind: str) -> None:
        self._close_open_step()
        ended = self.cycles.start_step(kind, self.current_counts, self._block_label)
        if ended is not None:
            # stored once the block's step results (energy, time) are in
            self._ended_cycles.append(ended)
        self.current_step = cs
        sid = cs.channel_step.step_id if cs else -1
        self._step_cycle[sid] = self.cycles.current
        self._open_step = [sid, 0.0]
        self._emit(
            EventKind.step_started,
            step_id=sid,
            step=cs.label if cs else None,
            step_type=kind,
            cycle=self.cycles.cycle,
        )

    def _close_open_step(self, exact_charge_Ah: float | None = None) -> None:
        """Count the open step's charge into the cycle (once)."""
        if self._open_step is None:
            return
        q = exact_charge_Ah if exact_charge_Ah is not None else self._open_step[1]
        self.cycles.add_charge(self.current_counts, q)
        self._open_step = None

    def _check_envelope(self, batch: RecordBatch) -> None:
        lim = self.protocol.limits
        bad: list[tuple[str, float, Any]] = []
        if lim.voltage_V is not None:
            lo, hi = lim.voltage_V
            v = batch.voltage_V
            idx = np.flatnonzero((v < lo) | (v > hi))
            if idx.size:
                bad.append(("voltage", float(v[idx[0]]), list(lim.voltage_V)))
        if lim.current_abs_A is not None:
            i = np.abs(batch.current_A)
            idx = np.flatnonzero(i > lim.current_abs_A * 1.001)
            if idx.size:
                bad.append(("current", float(batch.current_A[idx[0]]), lim.current_abs_A))
        if lim.temperature_C is not None:
            t = batch.temperature_C
            lo, hi = lim.temperature_C
            idx = np.flatnonzero((t < lo) | (t > hi))
            if idx.size:
                bad.append(("temperature", float(t[idx[0]]), list(lim.temperature_C)))
        if bad:
            quantity, value, limit = bad[0]
            self._emit(EventKind.limit_trip, quantity=quantity, value=value, limit=limit)
            # the safe state is applied by the caller's cleanup; do not resume by itself
            cs = self.current_step
            self._abort_requested = trip_reason(
                quantity, value, limit, step_no=self.steps_done + 1,
                step_label=cs.label if cs else None,
                first_record=self.last_record_seq <= 0 and self.steps_done == 0,
            )  # fmt: skip

    def _after_block(self, result: BlockResult) -> None:
        end_loop = False
        for end in result.steps:
            cs = self._block_map.get(end.step_id)
            self._finish_step(end, cs)
            if end.action == "end_block" and cs is not None:
                end_loop = self._ends_loop(cs, end)
            elif end.action == "notify":
                self._emit(EventKind.notify, step_id=end.step_id, reason=end.reason)
        self._store_ended_cycles()
        self._publish_status()
        self.store.flush_events()
        self._journal_unit_done()
        if result.state == ChannelState.fault:
            self._emit(EventKind.fault, message=result.fault or "instrument fault")
            trip = self._abort_requested or ""
            if trip.startswith("safety limit"):  # the instrument acted on the same limit
                raise RunAborted(
                    f"{trip} The cycler {self.bind.cycler.name} stopped the channel on its own "
                    f"copy of the limit (it reported {result.fault}).",
                    RunState.failed,
                )
            raise RunAborted(f"instrument fault: {result.fault}", RunState.failed)
        if any(e.action == "abort" for e in result.steps):
            raise RunAborted("end condition with action abort")
        self._check_control()
        if any(e.action == "pause" for e in result.steps):
            self._pause_requested = True
        if end_loop:
            raise _EndLoop()

    def _ends_loop(self, cs: CompiledStep, end: StepEnd) -> bool:
        # end_block is used for 'end_loop' actions and for the end of a pulse train.
        src = cs.source
        return getattr(src, "step", None) != "pulse"

    def _finish_step(self, end: StepEnd, cs: CompiledStep | None) -> None:
        kind = cs.channel_step.kind if cs else "unknown"
        if end.step_id not in self._seen_steps:
            # a step that recorded nothing (ended at once): still counts
            self._start_step(cs, kind)
        if self._open_step is not None and self._open_step[0] == end.step_id:
            self._close_open_step(end.charge_Ah)
        self.cycles.add_step_totals(
            kind,
            self.current_counts,
            end.charge_Ah,
            end.energy_Wh,
            end.time_s,
            cs.c_rate if cs else None,
            self.run_time(),
            target=self._step_cycle.pop(end.step_id, None),
        )
        self.steps_done += 1
        self._emit(
            EventKind.step_ended,
            step_id=end.step_id,
            reason=end.reason,
            duration_s=end.time_s,
            capacity_Ah=end.charge_Ah,
            end_voltage_V=end.end_voltage_V,
            cycle=self.cycles.cycle,
        )

    def _store_ended_cycles(self) -> None:
        for figures in self._ended_cycles:
            self._store_cycle(figures)
        self._ended_cycles.clear()
        self._step_cycle.clear()

    def _finish_cycle(self) -> None:
        self._store_ended_cycles()
        cur = self.cycles.current
        if cur.charge_Ah > 0 or cur.discharge_Ah > 0:
            self._store_cycle(cur)

    def _store_cycle(self, figures: CycleFigures) -> None:
        row = figures.row(self._cam_mass_g)
        self.store.add_cycle(row)
        if self.journal is not None:
            self.journal.add_cycle(row)
        self._emit(EventKind.cycle_ended, **row)

    # ------------------------------------------------------------------ journal and resume

    def _snapshot(self) -> dict[str, Any]:
        cyc = self.cycles
        return {
            "cycle": asdict(cyc.current),
            "last_active": cyc.last_active,
            "cycle_started": cyc.started,
            "steps_done": self.steps_done,
            "event_seq": self.event_seq,
            "block_id": self.block_id,
            "next_step_id": self.compiler.next_id,
            "read_seq": self.last_record_seq,
            "last": [self.last_voltage, self.last_current, self.last_temperature],
            "last_time": self._last_time,
        }

    def _journal_unit_start(self, kind: str, **extra: Any) -> None:
        self.store.sync()  # the journal's position never runs ahead of the staged rows
        self._unit_info = {
            "kind": kind,
            "pos": [list(p) for p in self._pos],
            "before": self._snapshot(),
            **extra,
        }
        if self.journal is not None:
            self.journal.unit_start(self._unit_info)

    def _journal_unit_done(self) -> None:
        if self.journal is not None and self._unit_info is not None:
            self.store.sync()
            self.journal.unit_done({**self._unit_info, "after": self._snapshot()})

    def resume_from(self, journal: Journal) -> None:
        """Continue this run where the journal says it was (call before ``run``)."""
        unit = journal.get("unit")
        since = 0
        if unit is not None:
            snap = unit["after"] if unit["state"] == "done" else unit["before"]
            since = int(snap["event_seq"])
        self._resume_from = {
            "unit": unit,
            "cycles": journal.cycles,
            "max_event_seq": journal.max_event_seq(),
            "since": [e for e in journal.events_after(since) if e.kind != EventKind.run_resumed],
            "started": (journal.get("started") or {}).get("wall"),
        }

    def _restore(self, info: dict[str, Any]) -> list[Any] | None:
        unit = info["unit"]
        self.event_seq = int(info["max_event_seq"])
        self._replay_expect = collections.deque(_event_key(e.kind, e.data) for e in info["since"])
        self.stored_seq = self.store.stored_seq
        if info["started"] is not None and not self.clock.virtual:
            self._t0 = self.clock.now() - max(0.0, self.clock.wall() - float(info["started"]))
        if unit is None:
            return None  # nothing had been sent yet: start from the top
        snap = unit["after"] if unit["state"] == "done" else unit["before"]
        cur = CycleFigures(**snap["cycle"])
        self.cycles.restore(cur, snap["last_active"], bool(snap["cycle_started"]))
        load_cycles = info["cycles"]
        self.store.replace_cycles(lambda: [r for r in load_cycles() if int(r["cycle"]) < cur.cycle])
        self.steps_done = int(snap["steps_done"])
        self.block_id = int(snap["block_id"])
        self.compiler.next_id = int(snap["next_step_id"])
        self.last_record_seq = int(snap["read_seq"])
        self.last_voltage, self.last_current, self.last_temperature = snap["last"]
        self._last_time = float(snap.get("last_time", 0.0))
        self._resumed_unit = unit
        self._unit_info = {k: v for k, v in unit.items() if k not in ("state", "after")}
        return list(unit["pos"])

    async def _prepare_resumed(self) -> None:
        """After a restart: the channel's limits read back and compared (run/limits.py)."""
        for note in await check_resumed_limits(self.bind.cycler, self.protocol.limits):
            self._emit(EventKind.notify, message=note)

    # ------------------------------------------------------------------ other instruments

    async def _eis(self, step: EisStep) -> None:
        imp = self.bind.impedance
        if imp is None:
            raise RunAborted(
                "this protocol has an EIS step but the station has no "
                "impedance channel for this cell",
                RunState.failed,
            )
        self._emit(
            EventKind.step_started,
            step=step.text or "EIS",
            step_type="eis",
            cycle=self.cycles.cycle,
        )
        if step.rest_before_s > 0:
            await self.clock.sleep(step.rest_before_s)
        resource = f"impedance:{imp.name}"
        t_wait = self.clock.now()
        async with self.bind.booking(resource):
            waited = self.clock.now() - t_wait
            if waited > 0:
                self._emit(EventKind.wait, resource=resource, seconds=waited)
            res = await self._measure_eis(imp, step)
        path = self.store.write_eis(
            self.cycles.cycle,
            res.frequency_Hz,
            res.z_real_ohm,
            res.z_imag_ohm,
            meta={"dc_voltage_V": res.dc_voltage_V, "run_time_s": self.run_time()},
        )
        self.steps_done += 1
        self._emit(
            EventKind.step_ended,
            step=step.text or "EIS",
            step_type="eis",
            file=str(path.relative_to(self.store.root)),
            duration_s=res.duration_s,
            cycle=self.cycles.cycle,
        )

    async def _measure_eis(self, imp: ImpedanceChannel, step: EisStep) -> Any:
        req = EisRequest(
            frequencies_Hz=tuple(step.frequencies_Hz()),
            amplitude_V=step.amplitude_V,
            amplitude_A=step.amplitude_A,
            bias=step.bias,
            bias_V=step.bias_V,
            bias_A=step.bias_A,
        )
        return await imp.measure_eis(req)

    async def _chamber(self, step: ChamberStep) -> None:
        ch = self.bind.chamber
        if ch is None:
            raise RunAborted(
                "this protocol sets a chamber temperature but the station has "
                "no chamber for this cell",
                RunState.failed,
            )
        await ch.set_temperature(step.setpoint_C)
        rule = step.wait
        if rule is None:
            return
        t_start = self.clock.now()
        stable_since: float | None = None
        while True:
            t = await ch.read_temperature()
            now = self.clock.now()
            if abs(t - step.setpoint_C) <= rule.tolerance_K:
                stable_since = now if stable_since is None else stable_since
                if now - stable_since >= rule.hold_s:
                    return
            else:
                stable_since = None
            if rule.timeout_s is not None and now - t_start > rule.timeout_s:
                if rule.on_timeout == "abort":
                    raise RunAborted(
                        f"chamber did not reach {step.setpoint_C} °C ± {rule.tolerance_K} K "
                        f"within {rule.timeout_s:.0f} s (at {t:.2f} °C)",
                        RunState.failed,
                    )
                return
            await self.clock.sleep(min(30.0, max(1.0, rule.hold_s / 10)))


def _event_key(kind: EventKind, data: dict[str, Any]) -> tuple[Any, ...]:
    return (kind, data.get("step_id"), data.get("cycle"), data.get("iteration"))


def _compare(v: float, op: str, threshold: float) -> bool:
    return {
        "<": v < threshold,
        "<=": v <= threshold,
        ">": v > threshold,
        ">=": v >= threshold,
    }[op]


def _cell_dict(cell: CellSpec | None) -> dict[str, Any] | None:
    return None if cell is None else cell.model_dump(exclude_none=True)
