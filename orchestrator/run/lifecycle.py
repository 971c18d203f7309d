"""The lifecycle every run shares: events, status, pause and abort, safe state, close.

A run (a cell run or a furnace run) is a subclass that says what it walks and which
instruments it must leave safe; this class numbers and records its events, publishes
its status, honours pause and abort requests between its units of work, puts every
instrument it used in its safe state (each under a deadline, asked again when the
answer is late) and closes its store and journal, reporting what could not be written.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from labrig.drivers.capabilities import Instrument, InstrumentError
from labrig.protocols.models import Protocol

from ..clock import Clock
from ..events import (
    Event,
    EventKind,
    EventSink,
    EventTimeline,
    PendingEvent,
    RunState,
    RunStatus,
    SinkFanout,
)
from ..journal import Journal
from ..store import RunStore

__all__ = [
    "SAFE_STATE_ATTEMPTS",
    "SAFE_STATE_TIMEOUT_S",
    "RunAborted",
    "RunLifecycle",
    "RunOptions",
    "RunOutcome",
    "event_key",
    "safe_state_with_retries",
]

log = logging.getLogger(__name__)

SAFE_STATE_ATTEMPTS = 3
SAFE_STATE_TIMEOUT_S = 10.0


class RunAborted(Exception):
    """The run was aborted (by an operator, a limit trip, or an end action)."""

    def __init__(self, reason: str, state: RunState = RunState.aborted) -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state


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
    # how often a running block's retained status is published (state, step and cycle
    # changes are published at once; live readings go out as telemetry)
    status_every_s: float = 10.0
    flush_every_s: float = 60.0  # wall seconds between forced data flushes on hardware


@dataclass
class RunOutcome:
    run_id: str
    state: RunState
    reason: str | None
    cycles: int
    rows: int
    run_time_s: float


async def safe_state_with_retries(inst: Instrument) -> None:
    """``inst.safe_state()`` under a deadline, tried again if the answer did not come in
    time: when a whole station stops at once, the host can be too busy to read replies
    for a while, and an instrument left running is worse than a late stop."""
    late: list[asyncio.Task[None]] = []  # earlier attempts, still waiting for an answer
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
                log.warning("safe state of %s: no answer yet, asking again", inst.name)
    finally:
        for call in late:  # an answer came to a later attempt: the earlier are moot
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await call


def event_key(kind: EventKind, data: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies an event when a resumed run re-derives it."""
    return (kind, data.get("step_id"), data.get("cycle"), data.get("iteration"))


class RunLifecycle:
    """Events, status, control, journal position and ending of one run.

    :meth:`run` is the lifecycle: ``_begin`` (the first events), ``_work`` (the
    protocol), then, however the work ended, every instrument of :meth:`safe_targets`
    to its safe state and :meth:`_close`. A subclass provides those and
    :meth:`status`, :meth:`_outcome` and :meth:`_snapshot`; it calls
    :meth:`_check_control` or :meth:`_safe_point` between its units of work and
    journals each unit with :meth:`_journal_unit_start` and :meth:`_journal_unit_done`.
    """

    def __init__(
        self,
        *,
        run_id: str,
        protocol: Protocol,
        channel: str,
        store: RunStore,
        journal: Journal | None,
        sinks: Sequence[EventSink],
        on_progress: Callable[[Any], None] | None,
    ) -> None:
        self.run_id = run_id
        self.protocol = protocol
        self.channel = channel
        self.store = store
        self.journal = journal
        self.out = SinkFanout(sinks)
        self.on_progress = on_progress
        self.state = RunState.pending
        self.reason: str | None = None
        self.event_seq = 0
        self._t0 = 0.0
        self._clock: Clock | None = None
        self._abort_requested: str | None = None
        self._abandoned = False
        self._pause_requested = False
        self._resume = asyncio.Event()
        # events a resumed run re-derives that the journal already holds (not recorded again)
        self._replay_expect: collections.deque[tuple[Any, ...]] = collections.deque()
        self._pos: list[Any] = []  # where the walk is: the unit in progress, from the root
        self._unit_info: dict[str, Any] | None = None  # the journal entry of that unit
        self._resume_from: dict[str, Any] | None = None  # what the journal said (resuming)
        # events wait here until nothing not known yet can be dated before them
        self._timeline = EventTimeline()
        self._ending = False  # the run is closing: every event waiting goes out

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

    def _start_clock(self) -> None:
        self._clock = Clock()
        self._t0 = self._clock.now()

    def run_time(self) -> float:
        return self.clock.now() - self._t0 if self._clock is not None else 0.0

    def _check_control(self) -> None:
        if self._abort_requested is not None:
            raise RunAborted(self._abort_requested)

    async def _safe_point(self) -> None:
        """Between units of work (instruments idle): honour pause and abort here."""
        self._check_control()
        if not self._pause_requested:
            return
        self.state = RunState.paused
        self._emit(EventKind.paused)
        # Paused, the run may wait for days or be stopped here: what waits for the end
        # of a cycle that may be over is recorded now (a cycle_ended that comes after
        # the resume is then dated no earlier than the pause; its row keeps its end time)
        self._release_events(everything=True)
        self._publish_status()
        await self._resume.wait()
        self._check_control()
        self.state = RunState.running
        self._emit(EventKind.resumed)
        self._publish_status()

    # ------------------------------------------------------------------ events

    def record(self, kind: EventKind, **data: Any) -> None:
        """Record an event from outside the run (an operator command, a notice)."""
        self._emit(kind, **data)

    def _emit(self, event_kind: EventKind, /, **data: Any) -> None:
        """An event that happens on the host now (run time)."""
        self._emit_at(self.run_time(), event_kind, **data)

    def _emit_at(self, time_s: float, event_kind: EventKind, /, **data: Any) -> None:
        """An event that happened at ``time_s`` (run time, the clock of the data): it is
        recorded once every event that could come before it is known."""
        self._timeline.add(event_kind, time_s, data)
        self._release_events()

    def _event_bound(self) -> tuple[float, int] | None:
        """The earliest (time, rank) at which an event not known yet may still fall
        (:class:`EventTimeline`); None when nothing is pending."""
        return None

    def _release_events(self, *, everything: bool = False) -> None:
        bound = None if self._ending or everything else self._event_bound()
        for pending in self._timeline.due(bound):
            self._record_event(pending)

    def _record_event(self, pending: PendingEvent) -> None:
        event_kind, data = pending.kind, pending.data
        if self._replay_expect and event_kind != EventKind.run_resumed:
            # A resumed run re-derives the events of the unit it re-attached to; those
            # the journal already holds are not recorded or published again.
            key = event_key(event_kind, data)
            if key == self._replay_expect[0]:
                self._replay_expect.popleft()
                return
            self._replay_expect.clear()  # the story diverged: everything from here is new
        self.event_seq += 1
        now = self.run_time()
        e = Event(
            run_id=self.run_id,
            channel=self.channel,
            seq=self.event_seq,
            kind=event_kind,
            wall_time=self.clock.wall() - (now - pending.time_s),
            run_time_s=pending.time_s,
            data=data,
        )
        self.store.append_event(e)
        if self.journal is not None:
            self.journal.log_event(e)
        self.out.event(e)

    def status(self) -> RunStatus:
        raise NotImplementedError

    def _publish_status(self) -> None:
        self.out.status(self.status())
        if self.on_progress is not None:
            self.on_progress(self)

    # ------------------------------------------------------------------ run

    async def run(self) -> RunOutcome:
        """Run to the end; every instrument the run used ends in its safe state."""
        self._start_clock()
        self.state = RunState.running
        self._begin()
        try:
            await self._work()
            self.state = RunState.finished
        except RunAborted as exc:
            self.state = exc.state
            self.reason = exc.reason
        except InstrumentError as exc:
            self.state = RunState.failed
            self.reason = self._instrument_failed(exc)
        except asyncio.CancelledError:
            if self._abandoned:
                raise  # as if the process died: nothing more is sent or written
            self.state = RunState.aborted
            self.reason = self._abort_requested or "cancelled"  # the signal, if one says
            await self._safe_state_all()
            await self._cancelled_safe()
            self._close()
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
        self._close()
        return self._outcome()

    def _begin(self) -> None:
        """The run's first events (started, or resumed), before any instrument is used."""
        raise NotImplementedError

    async def _work(self) -> None:
        """Carry out the protocol; returns when it is done."""
        raise NotImplementedError

    def _outcome(self) -> RunOutcome:
        raise NotImplementedError

    def _instrument_failed(self, exc: InstrumentError) -> str:
        """Record an instrument's error that ended the run; returns the run's reason."""
        self._emit(EventKind.fault, message=str(exc))
        return f"instrument error: {exc}"

    async def _cancelled_safe(self) -> None:
        """A cancelled run's instruments are safe; its final writes come next."""

    # ------------------------------------------------------------------ journal position

    def _snapshot(self) -> dict[str, Any]:
        """What a resumed run needs to know of its bookkeeping at a journalled point."""
        raise NotImplementedError

    def resume_from(self, journal: Journal) -> None:
        """Continue this run where the journal says it was (call before ``run``)."""
        self._resume_from = {
            "unit": journal.get("unit"),
            "max_event_seq": journal.max_event_seq(),
            "started": journal.get("started") or {},
        }

    @staticmethod
    def _unit_snapshot(unit: dict[str, Any]) -> dict[str, Any]:
        """The newest snapshot of a journalled unit: after it, or its progress, or before."""
        if unit["state"] == "done":
            return dict(unit["after"])
        return dict(unit.get("now", unit["before"]))

    def _restore_run_time(self, started: dict[str, Any], at_least_s: float = 0.0) -> float:
        """Run time goes on from the run's start (``started``: the journal's, by the wall
        clock on hardware; a virtual clock restarts with the process), never behind
        ``at_least_s``; returns it."""
        elapsed = 0.0
        wall = started.get("wall")
        if wall is not None and not self.clock.virtual:
            elapsed = max(0.0, self.clock.wall() - float(wall))
        elapsed = max(elapsed, at_least_s)
        self._t0 = self.clock.now() - elapsed
        return elapsed

    def _journal_unit_start(self, kind: str, **extra: Any) -> None:
        """A unit of work is about to be sent to an instrument: journal where and what."""
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

    # ------------------------------------------------------------------ ending

    def safe_targets(self) -> list[Instrument]:
        """The instruments this run must leave in their safe state, in order."""
        raise NotImplementedError

    async def _make_safe(self, inst: Instrument) -> None:
        """Put one instrument in its safe state (a subclass may do more for some)."""
        await safe_state_with_retries(inst)

    async def _safe_state_all(self) -> None:
        """Every instrument the run used to its safe state, each under its own deadline."""
        for inst in self.safe_targets():
            try:
                await self._make_safe(inst)
            except Exception as exc:  # keep going: every instrument gets its chance
                why = (
                    f"no answer within {SAFE_STATE_TIMEOUT_S * SAFE_STATE_ATTEMPTS:g} s"
                    if isinstance(exc, TimeoutError)
                    else str(exc) or type(exc).__name__
                )
                log.error("safe state of %s failed: %s", inst.name, why)
                self._emit(EventKind.fault, message=f"safe state of {inst.name} failed: {why}")

    def _closing(self) -> None:
        """The run's own last bookkeeping and files, before its ``run_ended`` event."""

    def _closed(self) -> None:
        """After the store is finished (its last metadata)."""

    def _close(self) -> None:
        if self.state in (RunState.running, RunState.paused):
            self.state = RunState.failed
        # Storage can be what failed (a full disk): the instruments are already safe,
        # so report what could not be written instead of crashing on it.
        self._ending = True
        try:
            self._closing()
        except (OSError, sqlite3.Error) as exc:
            self._storage_failed(exc)
        try:
            self._emit(EventKind.run_ended, state=self.state.value, reason=self.reason)
        except (OSError, sqlite3.Error) as exc:
            self._storage_failed(exc)
        self._publish_status()
        try:
            self.store.finish(self.state, self.reason)
            self._closed()
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
