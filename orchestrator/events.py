"""Events, status and telemetry that a run emits, and the sink interface that consumes them.

The executor produces; sinks (run storage, MQTT, the progress display) consume. A sink
must never stall control: ``publish`` is synchronous and non-blocking (put into a bounded
queue or latest-wins slot and return). Each event carries ``seq``, a per-run sequence
number that is never reused, so consumers can drop duplicates after a reconnect.

Events are dated on the run's clock (``run_time_s``: seconds since the run started),
which is also the clock of the data's ``time_s``. What the instrument did (a step
started or ended, a cycle ended, a limit crossed) is dated by the records that show it;
what the host did (run started, paused, a checkpoint began) by the moment it did it. A
run's events are recorded in time order: :class:`EventTimeline` holds each event until
nothing still unknown can be dated before it, and ``seq`` follows that order.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Event",
    "EventKind",
    "EventSink",
    "EventTimeline",
    "PendingEvent",
    "RunState",
    "RunStatus",
    "SinkFanout",
    "Telemetry",
]


class EventKind(StrEnum):
    run_started = "run_started"
    run_resumed = "run_resumed"
    run_ended = "run_ended"  # data: state (finished|aborted|failed), reason
    step_started = "step_started"
    step_ended = "step_ended"  # data: reason, duration_s, capacity_Ah, end_voltage_V
    cycle_ended = "cycle_ended"  # data: the cycle's row of cycles.csv
    checkpoint_started = "checkpoint_started"
    checkpoint_done = "checkpoint_done"
    limit_trip = "limit_trip"  # data: quantity, value, limit
    fault = "fault"  # data: message, instrument
    paused = "paused"
    resumed = "resumed"
    command = "command"  # data: command, sender, accepted, reason
    notify = "notify"
    wait = "wait"  # data: resource, seconds (waiting for a shared instrument)


class RunState(StrEnum):
    pending = "pending"
    running = "running"
    paused = "paused"
    finished = "finished"
    aborted = "aborted"
    failed = "failed"


@dataclass(frozen=True, slots=True)
class Event:
    run_id: str
    channel: str
    seq: int
    kind: EventKind
    wall_time: float  # seconds since the Unix epoch
    run_time_s: float  # seconds since the run started (monotonic clock)
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = {
            "run_id": self.run_id,
            "channel": self.channel,
            "seq": self.seq,
            "kind": self.kind.value,
            "wall_time": self.wall_time,
            "run_time_s": self.run_time_s,
            "data": self.data,
        }
        return json.dumps(d, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str) -> Event:
        d = json.loads(text)
        d["kind"] = EventKind(d["kind"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class RunStatus:
    """Last known state of a channel's run (retained on MQTT, shown by the monitor)."""

    run_id: str
    channel: str
    protocol: str
    state: RunState
    step: str | None
    step_index: int | None
    cycle: int
    voltage_V: float | None
    current_A: float | None
    temperature_C: float | None
    run_time_s: float
    eta_s: float | None
    updated: float  # wall time
    cell_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = _plain_fields(self)
        d["state"] = self.state.value
        return d


@dataclass(frozen=True, slots=True)
class Telemetry:
    run_id: str
    channel: str
    wall_time: float
    run_time_s: float
    voltage_V: float
    current_A: float
    temperature_C: float | None
    cycle: int
    step_index: int | None
    step: str | None = None  # the label of the step the reading belongs to

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)


def _plain_fields(obj: Any) -> dict[str, Any]:
    """A dataclass of plain values as a dict. ``dataclasses.asdict`` copies every value
    deeply, which for the statuses and readings of a thousand channels cost more than the
    rest of their way to the broker."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


# Among events dated at the same instant: a step ends, then its cycle, then what follows.
_RANK: dict[EventKind, int] = {EventKind.step_ended: 0, EventKind.cycle_ended: 1}
LATER = 2  # the rank of every other kind


def rank_of(kind: EventKind) -> int:
    return _RANK.get(kind, LATER)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event waiting for its turn: when it happened (run time) and what it says."""

    time_s: float
    kind: EventKind
    data: dict[str, Any]

    def key(self) -> tuple[EventKind, float, dict[str, Any]]:
        return (self.kind, self.time_s, self.data)

    def to_list(self) -> list[Any]:
        return [self.time_s, self.kind.value, self.data]

    @classmethod
    def from_list(cls, item: Sequence[Any]) -> PendingEvent:
        return cls(float(item[0]), EventKind(item[1]), dict(item[2]))


class EventTimeline:
    """Puts a run's events in time order before they are recorded.

    ``add`` files an event at the instant it happened; ``due(bound)`` hands back, in
    order, those that come before ``bound`` = (time, rank): the earliest place where an
    event not known yet could still fall (the end of a step the instrument has not
    reported, the end of a cycle that may be over). ``bound`` None hands back all. Ties
    keep the rank order (step ended, cycle ended, the rest) and then the order of
    ``add``. Nothing is handed back dated before what was handed back already: a late
    event is dated at the last time handed out, so the record stays in order.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, PendingEvent]] = []
        self._added = 0
        self.last_time_s = -math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, kind: EventKind, time_s: float, data: dict[str, Any]) -> None:
        self._added += 1
        item = PendingEvent(float(time_s), kind, data)
        heapq.heappush(self._heap, (item.time_s, rank_of(kind), self._added, item))

    def extend(self, items: Iterable[PendingEvent]) -> None:
        for e in items:
            self.add(e.kind, e.time_s, e.data)

    def due(self, bound: tuple[float, int] | None) -> list[PendingEvent]:
        out: list[PendingEvent] = []
        while self._heap and (bound is None or self._heap[0][:2] < bound):
            item = heapq.heappop(self._heap)[3]
            if item.time_s < self.last_time_s:
                item = PendingEvent(self.last_time_s, item.kind, item.data)
            self.last_time_s = item.time_s
            out.append(item)
        return out

    def pending(self) -> list[PendingEvent]:
        """What is waiting, in order (for the journal: a resumed run puts it back)."""
        return [h[3] for h in sorted(self._heap)]


@runtime_checkable
class EventSink(Protocol):
    """Consumes what a run emits. Every method must return quickly and never raise."""

    def publish_event(self, event: Event) -> None: ...

    def publish_status(self, status: RunStatus) -> None: ...

    def publish_telemetry(self, telemetry: Telemetry) -> None: ...


_log = logging.getLogger(__name__)


class SinkFanout:
    """Hands what a run emits to every sink; a failing sink is logged, never fatal."""

    def __init__(self, sinks: Sequence[EventSink]) -> None:
        self.sinks = list(sinks)

    def event(self, e: Event) -> None:
        for s in self.sinks:
            try:
                s.publish_event(e)
            except Exception:  # a sink must never stop a run
                _log.exception("sink %r failed on an event", s)

    def status(self, st: RunStatus) -> None:
        for s in self.sinks:
            try:
                s.publish_status(st)
            except Exception:
                _log.exception("sink %r failed on a status", s)

    def telemetry(self, t: Telemetry) -> None:
        for s in self.sinks:
            try:
                s.publish_telemetry(t)
            except Exception:
                _log.exception("sink %r failed on telemetry", s)
