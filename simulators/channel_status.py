"""What a simulated cycler channel reports: its status and how each step ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .cell.steps import Action

__all__ = ["SimStatus", "SimStepResult", "State"]

State = Literal["idle", "running", "paused", "done", "fault"]


@dataclass(frozen=True, slots=True)
class SimStatus:
    """What the channel reports at one instant."""

    state: State
    block_id: int | None
    step_id: int | None
    step_time_s: float
    voltage_V: float
    current_A: float
    last_seq: int
    """Sequence number of the newest record visible now (0 before the first)."""
    reason: str | None = None
    """Why the block stopped: fault text, ``aborted: ...``, ``stopped``, or None."""
    temperature_C: float = 25.0
    test_time_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SimStepResult:
    """How one step of a block ended."""

    step_id: int
    index: int  # position in the block
    reason: str  # voltage/current/time/capacity/dvdt/temperature/max_duration/stopped/safety
    action: Action
    duration_s: float  # step time (excludes time spent paused)
    charge_Ah: float  # signed, + into the cell
    energy_Wh: float
    end_voltage_V: float
    end_current_A: float
    end_time_s: float  # channel test time at the end
    fault: str | None = None
