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
from ._launch import ResumeFn, expected_eis_s
from ._marks import mark_run
from ._scheduler import Scheduler, SchedulerError
from ._shared import SharedInstruments, shared_instrument_names
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
    "SharedInstruments",
    "StaleData",
    "WatchdogOptions",
    "WatchdogStats",
    "WatchedCycler",
    "expected_eis_s",
    "mark_run",
    "shared_instrument_names",
]
