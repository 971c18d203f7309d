"""What the scheduler keeps about each run it was given: :class:`RunSpec` and :class:`Job`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from labrig.protocols.models import Protocol

from ..events import RunState
from ..executor import Executor, RunOptions, RunOutcome

__all__ = ["ACTIVE", "ENDED", "Job", "JobState", "RunSpec"]


class JobState(StrEnum):
    queued = "queued"  # behind another run on its channel
    waiting = "waiting"  # first on its channel, waiting for its start time or dependency
    running = "running"
    paused = "paused"
    finished = "finished"
    aborted = "aborted"
    failed = "failed"
    stopped = "stopped"  # the daemon stopped it at a safe point; resumes on restart
    detached = "detached"  # found running at start-up and not re-attached


ENDED = frozenset({JobState.finished, JobState.aborted, JobState.failed, JobState.stopped})
ACTIVE = frozenset({JobState.running, JobState.paused})


@dataclass
class RunSpec:
    """A run to schedule.

    ``not_before`` is a wall-clock time (seconds since the Unix epoch) before which the
    run does not start; ``after`` the id of a run that must have *finished* first (a run
    whose dependency ends aborted or failed is not started). ``position`` None picks the
    position with the shortest queue.
    """

    protocol: Protocol
    protocol_yaml: str
    position: str | None = None
    not_before: float | None = None
    after: str | None = None
    seed: int = 0
    run_id: str | None = None
    options: RunOptions | None = None


@dataclass(eq=False)
class Job:
    """One run's life in the scheduler (see :class:`JobState`)."""

    run_id: str
    position: str
    protocol_name: str
    spec: RunSpec | None
    state: JobState = JobState.queued
    reason: str | None = None
    submitted: float = 0.0
    started: float | None = None
    ended: float | None = None
    executor: Executor | None = None
    outcome: RunOutcome | None = None
    run_dir: Path | None = None
    resume: bool = False  # re-attach an existing run directory
    eis_expected_s: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    stop_mode: str | None = None  # "park" | "kill" | "abort" (before start)
    stop_reason: str | None = None
    parked: bool = False

    @property
    def ended_state(self) -> bool:
        return self.state in ENDED

    def view(self) -> dict[str, Any]:
        """JSON-ready row for ``labrig ls``."""
        d: dict[str, Any] = {
            "run_id": self.run_id,
            "position": self.position,
            "protocol": self.protocol_name,
            "state": self.state.value,
            "reason": self.reason,
            "cycle": None,
            "step": None,
            "eta_s": None,
            "run_time_s": None,
            "submitted": self.submitted,
            "started": self.started,
            "ended": self.ended,
            "not_before": self.spec.not_before if self.spec else None,
            "after": self.spec.after if self.spec else None,
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }
        ex = self.executor
        if ex is not None and ex.state != RunState.pending:  # it has a clock
            st = ex.status()
            d.update(cycle=st.cycle, step=st.step, eta_s=st.eta_s, run_time_s=st.run_time_s,
                     voltage_V=st.voltage_V, current_A=st.current_A,
                     temperature_C=st.temperature_C, cell_id=st.cell_id)  # fmt: skip
        return d
