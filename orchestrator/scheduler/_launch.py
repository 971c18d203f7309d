"""Starting one run of the scheduler: its instruments opened (shared ones once, for all
runs), wrapped in booking and the stale-data watchdog, then the run started or - for a
run re-attached after a restart - resumed from its journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from typing import Protocol as Interface

from labrig.protocols.models import EisStep, FurnaceStep, GasStep, Protocol

from ..events import EventSink
from ..executor import Executor, RunOptions, RunOutcome
from ..run.bindings import RunBindings
from ..station import Position, StationConfig
from ._booking import Booker
from ._jobs import Job
from ._shared import SharedInstruments
from ._watchdog import WatchdogOptions, WatchdogStats, WatchedCycler

__all__ = ["ResumeFn", "expected_eis_s", "launch", "position_kind"]

ResumeFn = Callable[..., Awaitable[tuple[RunOutcome, Path]]]
"""``orchestrator.runner.resume_run``'s shape: ``(run_dir, *, station, sim, sinks,
on_progress, on_executor, bindings, options)``."""


class Scheduler(Interface):
    """What starting a run takes from its scheduler."""

    station: StationConfig
    out_dir: Path
    sim: bool
    sinks: list[EventSink]
    adapter: Callable[[RunBindings, Position], RunBindings] | None
    watchdog: WatchdogOptions
    watchdog_stats: WatchdogStats
    run_options: RunOptions | None
    resume_fn: ResumeFn | None
    booker: Booker
    shared: SharedInstruments
    opening: asyncio.Semaphore  # how many runs may be opening their instruments at once


def expected_eis_s(protocol: Protocol) -> float | None:
    """How long this protocol holds the impedance channel per EIS (the longest sweep)."""
    from labrig.protocols.summary import eis_sweep_s

    sweeps = [eis_sweep_s(s) for s in protocol.steps() if isinstance(s, EisStep)]
    return max(sweeps) if sweeps else None


def position_kind(protocol: Protocol) -> str:
    """A protocol with furnace or gas steps needs a furnace position; others a cell one."""
    thermal = any(isinstance(s, FurnaceStep | GasStep) for s in protocol.steps())
    return "furnace" if thermal else "cell"


def stored_protocol(run_dir: Path) -> tuple[Protocol, int]:
    """The protocol and seed of a run directory (to open its instruments on resume)."""
    from labrig.protocols.loader import load_protocol_text

    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    text = (run_dir / "protocol.yaml").read_text(encoding="utf-8")
    return load_protocol_text(text), int(meta.get("seed", 0))


def _adapter(sched: Scheduler, job: Job) -> Callable[[RunBindings, Position], RunBindings]:
    def adapt(b: RunBindings, position: Position) -> RunBindings:
        # the caller's adapter sees the instruments as opened (to instrument them);
        # booking and the watchdog go on top
        if sched.adapter is not None:
            b = sched.adapter(b, position)
        cycler: Any = b.cycler
        if sched.watchdog.enabled:
            from .. import runner

            opts = (
                (job.spec.options if job.spec is not None else None)
                or sched.run_options
                or runner.default_options(sched.sim)
            )
            # the watchdog waits for the run's own collections, up to a minute
            look_s = min(opts.collect_s or opts.poll_s, 60.0)
            cycler = WatchedCycler(b.cycler, sched.watchdog, sched.watchdog_stats, look_s=look_s)
        return replace(
            b, cycler=cycler, booking=sched.booker.booking(job.run_id, job.eis_expected_s)
        )

    return adapt


async def launch(
    sched: Scheduler,
    job: Job,
    *,
    on_progress: Callable[[Executor], None],
    on_executor: Callable[[Executor], Any],
) -> tuple[RunOutcome, Path]:
    """Open ``job``'s instruments and run it (or resume it) to its end."""
    from .. import runner

    async with contextlib.AsyncExitStack() as stack:
        if job.resume:
            assert job.run_dir is not None
            protocol, seed = stored_protocol(job.run_dir)
        else:
            assert job.spec is not None
            protocol, seed = job.spec.protocol, job.spec.seed
        bindings: RunBindings | None = None
        if not runner.is_thermal(protocol):
            # open the instruments here so booking and the watchdog wrap them
            position = sched.station.position(job.position)
            # a station of a thousand channels opens them a few at a time: all at once,
            # the connections and the testers' answers time out on a busy host
            async with sched.opening:
                raw = await stack.enter_async_context(
                    runner.bind_instruments(
                        sched.station, position, protocol.cell, sim=sched.sim, seed=seed,
                        wrap=None if sched.sim else sched.shared.source,
                    )
                )  # fmt: skip
            bindings = _adapter(sched, job)(raw, position)
        if job.resume:
            assert sched.resume_fn is not None and job.run_dir is not None
            return await sched.resume_fn(
                job.run_dir, station=sched.station, sim=sched.sim, sinks=sched.sinks,
                on_progress=on_progress, on_executor=on_executor, bindings=bindings,
                options=sched.run_options,
            )  # fmt: skip
        assert job.spec is not None
        req = runner.RunRequest(
            protocol=job.spec.protocol,
            protocol_yaml=job.spec.protocol_yaml,
            out_dir=sched.out_dir,
            station=sched.station,
            position=job.position,
            sim=sched.sim,
            seed=job.spec.seed,
            options=job.spec.options or sched.run_options,
            run_id=job.run_id,
        )
        return await runner.execute_run(
            req, sinks=sched.sinks, on_progress=on_progress, on_executor=on_executor,
            bindings=bindings,
        )  # fmt: skip
