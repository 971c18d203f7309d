"""Scheduling many runs on one station: queues per channel, start times, dependencies,
booking of shared instruments, and the stale-data watchdog.

- :class:`Scheduler` - ``async with Scheduler(station=..., out_dir=..., sim=...) as s``;
  ``s.submit(RunSpec(...))``, ``s.command(run_id, "pause")``, ``s.stop(at_once=...)``.
- :class:`RunSpec`, :class:`Job`, :class:`JobState` - what is asked and how it is going.
- :class:`Booker` - FIFO booking of shared instruments and its predicted timeline.
- :class:`WatchedCycler`, :class:`WatchdogOptions` - the stale-data watchdog.

The daemon (:mod:`orchestrator.daemon`) serves a scheduler to ``labrig`` commands.
"""

from ._booking import Booker, BookingSlot, BookingStats, ResourceTimeline
from ._jobs import Job, JobState, RunSpec
from ._marks import mark_run
from ._scheduler import ResumeFn, Scheduler, SchedulerError, expected_eis_s
from ._watchdog import StaleData, WatchdogOptions, WatchdogStats, WatchedCycler

__all__ = [
    "Booker",
    "BookingSlot",
    "BookingStats",
    "Job",
    "JobState",
    "ResourceTimeline",
    "ResumeFn",
    "RunSpec",
    "Scheduler",
    "SchedulerError",
    "StaleData",
    "WatchdogOptions",
    "WatchdogStats",
    "WatchedCycler",
    "expected_eis_s",
    "mark_run",
]
