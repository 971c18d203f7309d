"""The scheduler: many runs at once, one per station position, each with its own life.

Every run is a task in the scheduler's TaskGroup; a run that fails (or whose instruments
cannot be opened) ends that run only. Each position has a FIFO queue: a run starts when
the runs before it on its channel have ended, its dependency (``after``) has finished
and its start time (``not_before``) has come - all waiting on the event loop's clock, so
the virtual clock of a dry run drives schedules too. The first run of a queue holds its
channel while it waits for its time or dependency (strict FIFO: predictable for users).

Shared instruments are opened once for all their runs (:mod:`._shared`) and booked
through :class:`~._booking.Booker` (FIFO); the cycler channel of every run is watched by
the stale-data watchdog (:mod:`._watchdog`). Opening and starting a run is
:mod:`._launch`; what a stopped or failed run's directory says, :mod:`._stopping`.

Stopping (:meth:`Scheduler.stop`): ``at_once=False`` pauses every run at its next safe
point (a block boundary, cycler at open circuit), then ends its task and marks its run
directory ``paused`` and resumable; ``at_once=True`` ends every run now (each instrument
to its safe state under its own deadline) and marks it ``aborted`` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..clock import Clock
from ..events import EventKind, EventSink, RunState
from ..executor import Executor, RunOptions
from ..run.bindings import RunBindings
from ..station import Position, StationConfig
from ..store import new_run_id
from ._booking import Booker, ResourceTimeline
from ._jobs import ACTIVE, ENDED, Job, JobState, RunSpec
from ._launch import ResumeFn, expected_eis_s, launch, position_kind
from ._shared import SharedInstruments
from ._stopping import close_unfinished, leave_unattached, mark_stopped, safe_state_detached
from ._watchdog import WatchdogOptions, WatchdogStats

__all__ = ["ResumeFn", "Scheduler", "SchedulerError", "expected_eis_s"]

log = logging.getLogger(__name__)

#: runs opening their instruments at the same moment (the rest wait their turn): a
#: thousand connections at once overflow the testers' listen queues and time out
OPENING_AT_ONCE = 64


class SchedulerError(ValueError):
    """A request the scheduler cannot honour; the message says why."""


class Scheduler:
    """Runs many protocols on one station. Use as ``async with Scheduler(...) as s``.

    ``sinks`` receive every run's events; ``on_executor`` is called with each run's
    executor when it starts; ``adapter`` may change a run's bindings as opened, before
    the scheduler adds booking and the watchdog (tests instrument instruments with it).
    Leaving the block waits for every run to end unless :meth:`stop` was called.
    """

    def __init__(
        self,
        *,
        station: StationConfig,
        out_dir: Path,
        sim: bool,
        sinks: Sequence[EventSink] = (),
        on_executor: Callable[[Executor], Any] | None = None,
        adapter: Callable[[RunBindings, Position], RunBindings] | None = None,
        watchdog: WatchdogOptions | None = None,
        run_options: RunOptions | None = None,
        resume_fn: ResumeFn | None = None,
        on_change: Callable[[], None] | None = None,
        stop_grace_s: float | None = None,
    ) -> None:
        """``stop_grace_s``: after a first (safe-point) stop, how long to wait for each
        run's block boundary before leaving the block to the instrument, which carries
        it out under its own limits while resume re-attaches later. None: wait."""
        self.stop_grace_s = stop_grace_s
        self._grace_timer: asyncio.TimerHandle | None = None
        self.station = station
        self.out_dir = out_dir
        self.sim = sim
        self.sinks = list(sinks)
        self.on_executor = on_executor
        self.adapter = adapter
        self.watchdog = watchdog or WatchdogOptions()
        self.watchdog_stats = WatchdogStats()
        self.run_options = run_options
        self.resume_fn = resume_fn
        self.on_change = on_change
        self.booker = Booker()
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, list[Job]] = {p.name: [] for p in station.positions}
        self._changed = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._clock: Clock | None = None
        self.shared = SharedInstruments(station, _not_started)
        self.opening = asyncio.Semaphore(OPENING_AT_ONCE)
        self.closing = False

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Scheduler:
        self._clock = Clock()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        tg = self._tg
        self.shared = SharedInstruments(
            self.station, lambda coro, name: tg.create_task(coro, name=name)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            if self._grace_timer is not None:
                self._grace_timer.cancel()
                self._grace_timer = None

    @property
    def clock(self) -> Clock:
        assert self._clock is not None, "use the scheduler inside 'async with'"
        return self._clock

    @property
    def watchdog_trips(self) -> int:
        """How many runs the stale-data watchdog has failed."""
        return self.watchdog_stats.trips

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("on_change hook failed")

    async def _until(self, pred: Callable[[], bool]) -> None:
        while not pred():
            await self._changed.wait()

    # ------------------------------------------------------------------ queries
    def jobs(self) -> list[Job]:
        """Every run the scheduler knows, in submission order."""
        return list(self._jobs.values())

    def active_on(self, position: str) -> Job | None:
        """The run now using ``position`` (started, not ended), if any."""
        q = self._queues.get(position) or []
        if q and q[0].executor is not None and q[0].state not in ENDED:
            return q[0]
        return None

    def get(self, run_id: str) -> Job:
        job = self._jobs.get(run_id)
        if job is None:
            raise SchedulerError(f"no run {run_id!r} in this scheduler")
        return job

    def queue(self, position: str) -> list[Job]:
        """The runs not yet ended on ``position``, in the order they will run."""
        return list(self._queues[position])

    def timeline(self) -> list[ResourceTimeline]:
        """Predicted bookings of shared instruments (holder first, then the queue)."""
        return self.booker.timeline()

    async def wait(self, run_id: str) -> Job:
        job = self.get(run_id)
        await job.done.wait()
        return job

    async def wait_all(self) -> None:
        for job in list(self._jobs.values()):
            await job.done.wait()

    # ------------------------------------------------------------------ submitting
    def submit(self, spec: RunSpec) -> Job:
        """Queue a run; returns its :class:`Job` (with its run id) at once."""
        if self._tg is None:
            raise SchedulerError("the scheduler is not running")
        if self.closing:
            raise SchedulerError("the scheduler is stopping; no new runs")
        if spec.position is None:
            kind = position_kind(spec.protocol)
            fits = [p for p in self.station.positions if p.kind == kind]
            if not fits:
                raise SchedulerError(f"station {self.station.name!r} has no {kind} position")
            position = min(fits, key=lambda p: len(self._queues[p.name])).name
        else:
            position = self.station.position(spec.position).name
        if spec.after is not None and spec.after not in self._jobs:
            state = self._past_run_state(spec.after)
            if state is None:
                raise SchedulerError(f"--after {spec.after!r}: no such run")
        if spec.not_before is not None and not (spec.not_before == spec.not_before):
            raise SchedulerError("start time is not a number")
        cell = spec.protocol.cell
        if spec.run_id is not None:
            run_id = spec.run_id
            if self._taken(run_id):
                raise SchedulerError(f"run id {run_id!r} is taken")
        else:
            # ids carry a second's time stamp and 16 random bits: many submitted in one
            # second can collide, so draw again
            for _ in range(1000):
                run_id = new_run_id(spec.protocol.name, cell.cell_id if cell else None)
                if not self._taken(run_id):
                    break
            else:  # pragma: no cover - 1000 collisions in a row
                raise SchedulerError("could not find a free run id")
        job = Job(
            run_id=run_id,
            position=position,
            protocol_name=spec.protocol.name,
            spec=spec,
            submitted=self.clock.wall(),
            eis_expected_s=expected_eis_s(spec.protocol),
        )
        self._add(job)
        return job

    def reattach(self, run_dir: Path) -> Job:
        """Take over a run found ``running``/``paused`` at start-up.

        With a ``resume_fn`` the run is resumed first on its channel; without one it is
        ``detached``: it holds its channel (the instrument may still be running it) until
        an operator aborts it.
        """
        meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        position = self.station.position(meta.get("position")).name
        proto = meta.get("protocol") or {}
        job = Job(
            run_id=str(meta.get("run_id", run_dir.name)),
            position=position,
            protocol_name=str(proto.get("name", "?")),
            spec=None,
            submitted=self.clock.wall(),
            run_dir=run_dir,
            resume=self.resume_fn is not None,
        )
        if self.resume_fn is None:
            job.state = JobState.detached
            job.reason = "found unfinished at start-up; resume is not available"
            self._jobs[job.run_id] = job
            self._queues[position].insert(0, job)
            self._notify()
            return job
        self._add(job, first=True)
        return job

    def _add(self, job: Job, first: bool = False) -> None:
        assert self._tg is not None
        self._jobs[job.run_id] = job
        q = self._queues[job.position]
        if first:
            q.insert(0, job)
        else:
            q.append(job)
        job.task = self._tg.create_task(self._run_job(job), name=f"labrig run {job.run_id}")
        self._notify()

    def _taken(self, run_id: str) -> bool:
        return run_id in self._jobs or (self.out_dir / run_id).exists()

    def _past_run_state(self, run_id: str) -> str | None:
        if "/" in run_id or run_id in ("", ".", ".."):
            return None
        try:
            meta = json.loads((self.out_dir / run_id / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        state = meta.get("state")
        return str(state) if state is not None else None

    # ------------------------------------------------------------------ control
    def command(self, run_id: str, command: str, sender: str = "local", record: bool = True) -> str:
        """pause | resume | abort one run; returns what happens, or raises SchedulerError.

        An accepted command is recorded as a ``command`` event of the run unless
        ``record`` is False (the MQTT side records its own, with the request id).
        """
        job = self.get(run_id)
        ex = job.executor
        if command == "abort":
            msg = self._abort(job, f"operator abort by {sender}")
        elif command == "pause":
            if ex is None or ex.state is not RunState.running:
                raise SchedulerError(f"run {run_id} is {job.state.value}, not running")
            ex.request_pause()
            msg = "pause requested; the run pauses at the next safe point"
        elif command == "resume":
            if ex is None or ex.state is not RunState.paused:
                raise SchedulerError(f"run {run_id} is {job.state.value}, not paused")
            ex.request_resume()
            msg = "resumed"
        else:
            raise SchedulerError(f"unknown command {command!r} (pause, resume, abort)")
        if record and ex is not None and ex.state is not RunState.pending:
            ex.record(EventKind.command, command=command, sender=sender, accepted=True, reason=msg)
        return msg

    def _abort(self, job: Job, reason: str) -> str:
        if job.state in ENDED:
            raise SchedulerError(f"run {job.run_id} has already ended ({job.state.value})")
        if job.state is JobState.detached:
            if job.stop_mode == "abort":
                return "abort already under way: its instruments are being put in their safe state"
            assert self._tg is not None
            job.stop_mode = "abort"
            job.task = self._tg.create_task(
                self._abort_detached(job, reason), name=f"labrig abort {job.run_id}"
            )
            return (
                "abort: the run's instruments are being put in their safe state, then the "
                "run is marked aborted and its channel is free"
            )
        if job.executor is None:
            job.stop_mode = "abort"
            job.stop_reason = reason
            assert job.task is not None
            job.task.cancel()
            return "removed from the queue"
        job.executor.request_abort(reason)
        return "abort requested; the run goes to its safe state"

    async def _abort_detached(self, job: Job, reason: str) -> None:
        """An operator's abort of a run not re-attached after a restart: its instruments
        to their safe state if they can be reached, then the run ``aborted`` saying so."""
        assert job.run_dir is not None
        done = await safe_state_detached(
            self.station, job.position, sim=self.sim, wrap=self.shared.source
        )
        why = f"{reason} (not resumed after a restart); {done}"
        close_unfinished(job.run_dir, why, durable=not self.sim, state="aborted")
        self._end(job, JobState.aborted, why)

    def stop(self, *, at_once: bool, reason: str) -> None:
        """Stop every run: at the next safe point (resumable) or at once (aborted)."""
        self.closing = True
        for job in list(self._jobs.values()):
            if job.state is JobState.detached and job.stop_mode == "abort":
                continue  # its abort ends it (within its deadline)
            if job.state is JobState.detached:  # as found on disk, for the next start
                self._end(job, JobState.stopped, f"{reason} (it was not re-attached)")
                continue
            if job.state in ENDED or job.task is None:
                continue
            ex = job.executor
            if ex is None:
                # not started: it stays in the daemon's queue file for the next start
                job.stop_mode = "park"
                job.stop_reason = reason
                job.task.cancel()
            elif at_once:
                if job.parked:
                    continue  # already stopped at a safe point
                job.stop_mode = "kill"
                job.stop_reason = reason
                job.task.cancel()
            elif job.stop_mode is None:
                job.stop_mode = "park"
                job.stop_reason = reason
                if ex.state is RunState.paused:
                    self._park(job)
                else:
                    ex.request_pause()
        if not at_once and self.stop_grace_s is not None and self._grace_timer is None:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self.stop_grace_s, self._park_the_rest)
        self._notify()

    def _park_the_rest(self) -> None:
        """The grace time after a first stop is over: leave each run where it is."""
        self._grace_timer = None
        for job in list(self._jobs.values()):
            if job.stop_mode == "park" and not job.parked and job.state not in ENDED:
                self._park(job)
        self._notify()

    def _park(self, job: Job) -> None:
        # At a safe point (block done, cycler at rest) the run is left exactly as a
        # killed process would leave it at that point - no final writes, instruments
        # untouched (a chamber keeps its temperature) - which is what resume handles.
        if not job.parked and job.task is not None:
            job.parked = True
            if job.executor is not None:
                job.executor.abandon()
            job.task.cancel()

    # ------------------------------------------------------------------ one run's life
    def _head(self, job: Job) -> bool:
        q = self._queues[job.position]
        return bool(q) and q[0] is job

    def _end(self, job: Job, state: JobState, reason: str | None) -> None:
        job.state = state
        job.reason = reason
        job.ended = self.clock.wall()
        q = self._queues[job.position]
        if job in q:
            q.remove(job)
        job.done.set()
        self._notify()

    async def _run_job(self, job: Job) -> None:
        try:
            await self._until(lambda: self._head(job))
            if not await self._wait_start(job):
                return
            await self._execute(job)
        except asyncio.CancelledError:
            if job.stop_mode is None:
                self._end(job, JobState.aborted, "cancelled")
                raise
            if job.executor is None:
                if job.stop_mode == "abort":
                    self._end(job, JobState.aborted, job.stop_reason)
                else:  # left for the next daemon start
                    self._end(job, JobState.stopped, job.stop_reason)
        except Exception as exc:  # a failing run never takes the others down
            reason = _why(exc)
            if job.resume and job.executor is None:
                log.error("run %s not re-attached: %s", job.run_id, reason,
                          exc_info=_unexpected(exc))  # fmt: skip
                self._detach(job, reason)
                return
            log.error("run %s failed: %s", job.run_id, reason, exc_info=_unexpected(exc))
            close_unfinished(job.run_dir, reason, durable=not self.sim)
            self._end(job, JobState.failed, reason)
        finally:
            if not job.done.is_set() and job.state is not JobState.detached:
                self._end(job, JobState.failed, job.reason or "ended unexpectedly")

    def _detach(self, job: Job, reason: str) -> None:
        """A run that could not be re-attached after a restart keeps its channel (its
        instrument may be carrying on a block) until an operator aborts it; the next
        start tries again. Its run directory says so; its journal is left untouched."""
        assert job.run_dir is not None
        leave_unattached(job.run_dir, reason)
        job.state = JobState.detached
        job.reason = f"not re-attached: {reason}"
        self._notify()

    async def _wait_start(self, job: Job) -> bool:
        spec = job.spec
        if spec is None:
            return True
        if spec.after is not None:
            job.state = JobState.waiting
            job.reason = f"after run {spec.after}"
            self._notify()
            dep = self._jobs.get(spec.after)
            if dep is not None:
                await dep.done.wait()
                dep_state = dep.state.value
            else:
                dep_state = self._past_run_state(spec.after) or "unknown"
            if dep_state != "finished":
                self._end(
                    job,
                    JobState.aborted,
                    f"not started: run {spec.after} it depends on ended {dep_state}",
                )
                return False
        if spec.not_before is not None:
            delay = spec.not_before - self.clock.wall()
            if delay > 0:
                job.state = JobState.waiting
                job.reason = "until " + time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(spec.not_before)
                )
                self._notify()
                await asyncio.sleep(delay)
        return True

    async def _execute(self, job: Job) -> None:
        job.state = JobState.running
        job.reason = None
        job.started = self.clock.wall()
        job.run_dir = job.run_dir or self.out_dir / job.run_id
        self._notify()

        def on_executor(ex: Executor) -> None:
            job.executor = ex
            if job.stop_mode == "park":
                ex.request_pause()
            if self.on_executor is not None:
                self.on_executor(ex)

        def on_progress(ex: Executor) -> None:
            state = JobState.paused if ex.state is RunState.paused else JobState.running
            if state is not job.state and job.state in ACTIVE:
                job.state = state
                self._notify()
            if job.stop_mode == "park" and ex.state is RunState.paused:
                self._park(job)

        try:
            outcome, root = await launch(
                self, job, on_progress=on_progress, on_executor=on_executor
            )
        except asyncio.CancelledError:
            if job.stop_mode in ("park", "kill") and job.executor is not None:
                self._end(job, *mark_stopped(job, durable=not self.sim))
                return
            raise
        job.outcome = outcome
        job.run_dir = root
        self._end(job, JobState(outcome.state.value), outcome.reason)


def _why(exc: BaseException) -> str:
    from labrig.drivers.capabilities import InstrumentError

    if isinstance(exc, InstrumentError | OSError):
        return f"instrument error: {exc}"
    if _damage(exc):
        return str(exc)  # it says what is damaged and what can be recovered
    return f"{type(exc).__name__}: {exc}"


def _damage(exc: BaseException) -> bool:
    from ..journal import JournalCorrupt
    from ..run.damage import RunDamaged

    return isinstance(exc, RunDamaged | JournalCorrupt)


def _unexpected(exc: BaseException) -> bool:
    """Whether the log needs the traceback: not for an instrument out of reach or a
    damaged run (their messages say it all)."""
    from labrig.drivers.capabilities import InstrumentError

    return not (isinstance(exc, InstrumentError | OSError) or _damage(exc))


def _not_started(coro: Any, name: str) -> None:
    coro.close()
    raise SchedulerError("use the scheduler inside 'async with'")
