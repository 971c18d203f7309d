"""Events, status and telemetry that a run emits, and the sink interface that consumes them.

The executor produces; sinks (run storage, MQTT, the progress display) consume. A sink
must never stall control: ``publish`` is synchronous and non-blocking (put into a bounded
queue or latest-wins slot and return). Each event carries ``seq``, a per-run sequence
number that is never reused, so consumers can drop duplicates after a reconnect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Event",
    "EventKind",
    "EventSink",
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
        d = asdict(self)
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
