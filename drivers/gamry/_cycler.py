"""Cycling on a Gamry, run by the host: rest and constant-current steps.

GamryCOM holds no step programme with end conditions, so each step is one acquisition
(OCV with the cell off for a rest, chronopotentiometry at the step's current for a CC
step) that the host ends when a cooked point meets one of the step's ends or leaves the
channel's limits. A step therefore ends up to one sample (the record interval) late,
and nothing guards the cell while the host is gone but the acquisition's own duration:
say so to whoever sets the protocol. CV steps are not run on this instrument here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from labrig.drivers.capabilities import (
    BlockResult,
    ChannelLimits,
    ChannelState,
    ChannelStatus,
    ChannelStep,
    EndCondition,
    InstrumentError,
    RecordBatch,
    StepEnd,
)
from labrig.drivers.recordstore import RecordStore, StepTally
from labrig.drivers.steps import remaining

__all__ = ["HostCycler"]

FOREVER_S = 30 * 86400.0


@dataclass
class _Run:
    block_id: int
    steps: tuple[ChannelStep, ...]
    ends: list[StepEnd] = field(default_factory=list)
    state: ChannelState = ChannelState.running
    fault: str | None = None
    step_id: int | None = None
    step_t0: float = 0.0


def _duration(step: ChannelStep) -> tuple[float, str]:
    best, why = (step.max_duration_s, "max_duration") if step.max_duration_s else (FOREVER_S, "")
    for e in step.ends:
        if e.quantity == "time" and e.value < best:
            best, why = e.value, "time"
        if e.quantity == "capacity" and step.mode == "cc" and step.current_A:
            t = e.value * 3600.0 / abs(step.current_A)
            if t < best:
                best, why = t, "capacity"
    return best, why


def _hit(e: EndCondition, v: float, v0: float) -> bool:
    if e.op == ">=":
        return v >= e.value
    if e.op == "<=":
        return v <= e.value
    return v >= e.value if v0 < e.value else v <= e.value


class HostCycler:
    """The :class:`CyclerChannel` half of a Gamry channel (see the module's notes)."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def k(self) -> Any:
        raise NotImplementedError

    def __init__(self) -> None:
        self._limits: ChannelLimits | None = None
        self._run: _Run | None = None
        self._task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None  # owns the block supervisor
        self.records = RecordStore()
        self._t0 = 0.0
        self._last_v = math.nan
        self._resume = asyncio.Event()
        self._resume.set()
        self.supervise_s = 5.0  # the sample period the host ends steps by

    async def acquire(
        self, dtaq_progid: str, columns: Sequence[str], *, mode: Any, level: float,
        duration_s: float, sample_s: float, cell_on: bool, stop: Any = None,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        raise NotImplementedError

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    def bind_run(self, run_id: str) -> None:
        """Nothing is named on the instrument: the run id changes nothing here."""

    async def set_limits(self, limits: ChannelLimits) -> None:
        if self._run is not None and self._run.state == ChannelState.running:
            raise InstrumentError(f"{self.name}: limits cannot change while a block runs")
        if limits.t_max_C is not None:
            raise InstrumentError(f"{self.name}: the potentiostat has no temperature input")
        self._limits = limits

    async def get_limits(self) -> ChannelLimits:
        if self._limits is None:
            raise InstrumentError(f"{self.name}: no limits set on this channel yet")
        return self._limits

    async def start_block(self, block_id: int, steps: Sequence[ChannelStep]) -> None:
        run = self._run
        if run is not None and run.block_id == block_id:
            return
        if run is not None and run.state == ChannelState.running:
            raise InstrumentError(f"{self.name}: block {run.block_id} still runs")
        lim = self._limits
        if lim is None:
            raise InstrumentError(f"{self.name}: set_limits before the first block")
        for s in steps:
            if s.mode not in ("rest", "cc"):
                raise InstrumentError(f"{self.name}: step {s.step_id}: mode {s.mode!r} is not "
                                      "run on this instrument (rest and cc only)")  # fmt: skip
            bad = [e.quantity for e in s.ends if e.quantity not in ("voltage", "time", "capacity")]
            if bad or (s.mode == "rest" and any(e.quantity == "capacity" for e in s.ends)):
                raise InstrumentError(f"{self.name}: step {s.step_id}: ends on {bad} are not "
                                      "run on this instrument")  # fmt: skip
            if abs(s.current_A) > lim.i_max_A:
                raise InstrumentError(f"{self.name}: step {s.step_id}: |{s.current_A}| A above "
                                      f"i_max {lim.i_max_A} A")  # fmt: skip
            if _duration(s)[0] >= FOREVER_S and not any(e.quantity == "voltage" for e in s.ends):
                raise InstrumentError(f"{self.name}: step {s.step_id} has no end that can come")
        if not steps:
            raise InstrumentError(f"{self.name}: a block needs at least one step")
        if self._group is None:
            raise InstrumentError(f"{self.name}: not open (use 'async with' or open())")
        self._run = _Run(block_id, tuple(steps))
        self._resume.set()
        self._task = self._group.create_task(
            self._supervise(self._run), name=f"{self.name}-block-{block_id}"
        )

    async def attach_block(
        self, block_id: int, steps: Sequence[ChannelStep], *, time_base_s: float = 0.0
    ) -> None:
        """The host ran the block: after a restart it starts again from its first step."""
        if self._run is not None and self._run.block_id == block_id:
            return
        await self.stop_block()
        await self.start_block(block_id, steps)

    async def wait_block(
        self, poll_s: float = 60.0, *, max_poll_s: float | None = None
    ) -> BlockResult:
        run = self._run
        if run is None:
            raise InstrumentError(f"{self.name}: no block started")
        while (
            run.state == ChannelState.running and self._task is not None and not self._task.done()
        ):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await asyncio.shield(self._task)
        return BlockResult(run.block_id, tuple(run.ends), run.state, run.fault)

    async def status(self) -> ChannelStatus:
        run = self._run
        if run is None:
            return ChannelStatus(ChannelState.idle, None, None, 0.0, self._last_v, 0.0,
                                 self.records.last_seq)  # fmt: skip
        running = run.state == ChannelState.running
        i = 0.0
        if running and run.step_id is not None:
            i = next((s.current_A for s in run.steps if s.step_id == run.step_id), 0.0)
        return ChannelStatus(run.state, run.block_id, run.step_id,
                             self._now() - run.step_t0 if running else 0.0, self._last_v, i,
                             self.records.last_seq, run.fault)  # fmt: skip

    async def read_records(self, after_seq: int) -> RecordBatch:
        return self.records.after(after_seq)

    async def pause(self) -> None:
        """The running step's acquisition ends at its next point, the cell off."""
        if self._run is not None and self._run.state == ChannelState.running:
            self._resume.clear()

    async def resume(self) -> None:
        self._resume.set()

    async def _start_tasks(self) -> None:
        """Own the tasks this channel starts (a TaskGroup, ended by :meth:`_end_tasks`)."""
        if self._group is None:
            self._group = asyncio.TaskGroup()
            await self._group.__aenter__()

    async def _end_tasks(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(None, None, None)

    async def stop_block(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, InstrumentError):
                await task
        if self._run is not None and self._run.state == ChannelState.running:
            self._run.state = ChannelState.done

    async def _supervise(self, run: _Run) -> None:
        try:
            idx = 0
            while 0 <= idx < len(run.steps):
                step = run.steps[idx]
                end = await self._step(run, step)
                run.ends.append(end)
                if end.reason == "safety":
                    run.state, run.fault = (
                        ChannelState.fault,
                        (f"step {step.step_id}: {end.end_voltage_V:.4f} V outside the limits"),
                    )
                    return
                if end.action == "pause":  # the block stops here, paused (cell off)
                    run.state = ChannelState.paused
                    return
                if end.action in ("abort", "end_block"):
                    break
                if end.action == "goto":
                    cond = next(
                        (e for e in step.ends if e.quantity == end.reason and e.goto is not None),
                        None,
                    )
                    idx = cond.goto if cond is not None and cond.goto is not None else idx + 1
                else:
                    idx += 1
            run.state = ChannelState.done
        except Exception as exc:  # a fault of the run, never of the task that opened us
            run.state, run.fault = ChannelState.fault, f"{type(exc).__name__}: {exc}"

    async def _step(self, run: _Run, step: ChannelStep) -> StepEnd:
        """One step, surviving host pauses (its time and charge add up across them)."""
        todo, elapsed, charge, energy = step, 0.0, 0.0, 0.0
        while True:
            end = await self._acquire_step(run, todo, elapsed)
            if self._resume.is_set():
                return dataclasses.replace(
                    end, step_id=step.step_id, time_s=elapsed + end.time_s,
                    charge_Ah=charge + end.charge_Ah, energy_Wh=energy + end.energy_Wh,
                )  # fmt: skip
            run.state = ChannelState.paused
            await self._resume.wait()
            run.state = ChannelState.running
            elapsed, charge, energy = (elapsed + end.time_s, charge + end.charge_Ah,
                                       energy + end.energy_Wh)  # fmt: skip
            todo = remaining(step, elapsed, abs(charge))

    async def _acquire_step(self, run: _Run, step: ChannelStep, elapsed: float) -> StepEnd:
        lim = self._limits
        assert lim is not None
        duration, why = _duration(step)
        # sample often enough to end the step near its threshold; record by the rule
        every = step.record.every_s or self.supervise_s
        t0 = max(self._now(), self.records.last_time)
        run.step_id, run.step_t0 = step.step_id, t0 - elapsed
        cc = step.mode == "cc" and step.current_A != 0.0
        rec = _StepRecorder(self.records, StepTally(step.step_id, t0), every, step.record.dV_V, cc)
        found: list[tuple[str, str]] = []

        def stop(cols: list[list[float]]) -> bool:
            rec.feed(cols)  # records as the points come, not at the step's end
            if not self._resume.is_set():
                return True  # a host pause: the acquisition ends, the cell goes off
            v = cols[1]
            if not v:
                return False
            x, v0 = v[-1], v[0]
            self._last_v = x
            if not lim.v_min_V <= x <= lim.v_max_V:
                found.append(("safety", "abort"))
                return True
            for e in step.ends:
                if e.quantity == "voltage" and _hit(e, x, v0):
                    found.append(("voltage", e.action))
                    return True
            return False

        progid, names = (
            ("GamryCOM.GamryDtaqChrono", _CHRONO) if cc else ("GamryCOM.GamryDtaqOcv", _OCV)
        )
        mode = self.k.GstatMode if cc else self.k.PstatMode
        cols = await self.acquire(progid, names, mode=mode, level=step.current_A if cc else 0.0,
                                  duration_s=duration, sample_s=min(every, self.supervise_s),
                                  cell_on=cc, stop=stop)  # fmt: skip
        rec.feed([c.tolist() for c in cols.values()])
        rec.finish()
        reason, action = found[0] if found else (why or "time", "next")
        if reason in ("time", "capacity"):
            e = next((x for x in step.ends if x.quantity == reason), None)
            action = e.action if e is not None else "next"
        tally = rec.tally
        return StepEnd(step_id=step.step_id, reason=reason, action=cast(Any, action),
                       time_s=rec.last_t, charge_Ah=tally.charge_Ah, energy_Wh=tally.energy_Wh,
                       end_voltage_V=rec.last_v)  # fmt: skip


class _StepRecorder:
    """Turns a step's samples into records by its record rule as they arrive; every
    sample counts towards the charge."""

    def __init__(
        self, store: RecordStore, tally: StepTally, every_s: float, dv: float | None, cc: bool
    ) -> None:
        self.store, self.tally, self.every_s, self.dv, self.cc = store, tally, every_s, dv, cc
        self.seen = 0
        self.slot = -1.0
        self.kept_v: float | None = None
        self.pending: tuple[float, float, float, float] | None = None  # t, i, v, q
        self.last_t, self.last_v = 0.0, math.nan

    def feed(self, cols: list[list[float]]) -> None:
        t = np.asarray(cols[0][self.seen :], dtype=np.float64)
        if t.size == 0:
            return
        v = np.asarray(cols[1][self.seen :], dtype=np.float64)
        i = np.asarray(cols[3][self.seen :], dtype=np.float64) if self.cc else np.zeros(t.size)
        self.seen += t.size
        tt, ii, q = self.tally.add(self.tally.t0_s + t, i, v)
        keep = np.zeros(t.size, dtype=bool)
        for k in range(t.size):
            slot = math.floor(t[k] / self.every_s + 1e-9)
            moved = self.dv is not None and self.kept_v is not None and abs(
                v[k] - self.kept_v) >= self.dv  # fmt: skip
            if slot != self.slot or moved:
                keep[k], self.slot, self.kept_v = True, slot, float(v[k])
        self.store.add(self.tally.step_id, tt[keep], ii[keep], v[keep], q[keep])
        self.pending = None if keep[-1] else (tt[-1], ii[-1], v[-1], q[-1])
        self.last_t, self.last_v = float(t[-1]), float(v[-1])

    def finish(self) -> None:
        """The step's last sample is always a record."""
        if self.pending is not None:
            t, i, v, q = (np.array([x]) for x in self.pending)
            self.store.add(self.tally.step_id, t, i, v, q)
            self.pending = None


_OCV = ("Time", "Vf", "Vm", "Vsig", "Ach", "Overload", "StopTest")
_CHRONO = ("Time", "Vf", "Vu", "Im", "Q", "Vsig", "Ach", "IERange", "Overload", "StopTest")
