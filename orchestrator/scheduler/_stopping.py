"""What the scheduler writes into a run directory when it stops a run, or when a run's
task ended without the executor saying how (a failed re-attach, a failed start)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from labrig.drivers.capabilities import Instrument, InstrumentError

from ..instruments import Source
from ..station import StationConfig
from ._jobs import Job, JobState
from ._marks import mark_run

__all__ = ["close_unfinished", "leave_unattached", "mark_stopped", "safe_state_detached"]

#: how long the abort of a run not re-attached tries to reach its instruments
DETACHED_SAFE_STATE_S = 20.0

log = logging.getLogger(__name__)


def mark_stopped(job: Job, *, durable: bool) -> tuple[JobState, str]:
    """Mark a run the daemon stopped: ``paused`` and resumable when it was left at a safe
    point, ``aborted`` when it was stopped at once. Returns the job's end state and why."""
    assert job.run_dir is not None
    reason = job.stop_reason or "stopped by the scheduler"
    parked = job.stop_mode == "park" and job.parked
    try:
        if parked:
            mark_run(
                job.run_dir,
                state="paused",
                reason=f"{reason}: stopped at a safe point; resumes when the daemon restarts",
                resumable=True,
                durable=durable,
                log_event=False,  # the journal stays as resume expects it
            )
        else:
            mark_run(
                job.run_dir,
                state="aborted",
                reason=f"{reason}: safe state at once",
                resumable=False,
                durable=durable,
            )
    except (OSError, ValueError) as exc:
        log.error("could not mark run %s: %s", job.run_id, exc)
    if parked:
        return JobState.stopped, reason
    return JobState.aborted, f"{reason}: safe state at once"


def close_unfinished(
    run_dir: Path | None, reason: str, *, durable: bool, state: str = "failed"
) -> None:
    """A run whose task failed without its executor ending it (or an operator's abort
    of a run not re-attached): a run directory that still says ``running`` or
    ``paused`` is marked ``state`` with the reason, so nothing waits for a run no one
    drives."""
    if run_dir is None or _state(run_dir) not in ("running", "paused"):
        return
    try:
        mark_run(run_dir, state=state, reason=reason, resumable=False, durable=durable)
    except Exception as exc:  # a damaged journal or event log: run.json says it still
        log.error("could not log the end of %s (%s); marking run.json only", run_dir.name, exc)
        with contextlib.suppress(OSError, ValueError):
            mark_run(run_dir, state=state, reason=reason, resumable=False, durable=durable,
                     log_event=False)  # fmt: skip


def leave_unattached(run_dir: Path, reason: str) -> None:
    """A run a restarted daemon could not re-attach: ``paused``, no longer
    ``resumable`` by the daemon on its own, with why and what the operator can do. Only
    run.json changes: its journal and data may be what is damaged, and its instrument
    was not commanded (a block it kept running goes on under its own limits)."""
    if _state(run_dir) not in ("running", "paused"):
        return
    why = (
        f"re-attach after a daemon restart failed: {reason}; the instrument was not "
        f"commanded. Continue with `labrig resume {run_dir}` (the daemon also tries again "
        "at its next start) or end it with `labrig abort`"
    )
    try:
        mark_run(run_dir, state="paused", reason=why, resumable=False, durable=True,
                 log_event=False)  # fmt: skip
    except (OSError, ValueError) as exc:
        log.error("could not mark %s: %s", run_dir.name, exc)


def _state(run_dir: Path) -> object:
    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("state")
    except (OSError, ValueError, AttributeError):
        return None


async def safe_state_detached(
    station: StationConfig,
    position: str,
    *,
    sim: bool,
    wrap: Callable[[Source], Source] | None,
    deadline_s: float = DETACHED_SAFE_STATE_S,
) -> str:
    """The operator aborts a run that was not re-attached: open the instruments of its
    position, command each to its safe state, close them. Returns what was done, for the
    run's reason (an instrument out of reach is said, not raised: the run is aborted all
    the same, and the operator must check that instrument)."""
    if sim:
        return "its simulated instruments ended with the daemon that ran them"
    from ..run.instruments import open_position, source_for

    failed: list[str] = []
    done: list[str] = []
    try:
        async with asyncio.timeout(deadline_s):
            source = source_for(sim=False)
            async with open_position(
                station, station.position(position), wrap(source) if wrap else source
            ) as inst:
                found: list[Instrument | None] = [inst.cycler, inst.impedance, inst.chamber,
                                                  inst.furnace, *inst.gases.values()]  # fmt: skip
                for one in (x for x in found if x is not None):
                    try:
                        await one.safe_state()
                        done.append(one.name)
                    except (InstrumentError, OSError) as exc:
                        failed.append(f"{one.name}: {exc}")
    except TimeoutError:
        failed.append(f"not reached within {deadline_s:g} s")
    except (InstrumentError, OSError) as exc:
        failed.append(f"could not be opened: {exc}")
    if failed:
        return (
            f"its instruments could not all be put in their safe state ({'; '.join(failed)})"
            + (f"; safe state commanded on {', '.join(done)}" if done else "")
            + ": check them"
        )
    return f"its instruments were put in their safe state ({', '.join(done)})"
