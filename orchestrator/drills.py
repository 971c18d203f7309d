"""Crash drills: kill a run at chosen moments and resume it, as a crashed PC would.

Used by the recovery tests and ``bench/crash_recovery.py``. Each "kill" stops the
executor the way ``kill -9`` stops a process (no safe state, no final writes, buffers
lost) while the simulated instrument keeps running; the run is then resumed from its
directory with :func:`orchestrator.runner.resume_run`, re-attaching to the instrument.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labrig.protocols.loader import dump_protocol_yaml
from labrig.protocols.models import Protocol

from .executor import Executor, RunOptions, RunOutcome
from .instruments.sim.cell import SimCell
from .instruments.sim.inprocess import SimCyclerChannel, SimImpedanceChannel
from .run.bindings import RunBindings
from .runner import RunRequest, execute_run, resume_run

__all__ = ["DrillResult", "run_with_kills"]


@dataclass
class DrillResult:
    outcome: RunOutcome
    root: Path
    kills: int = 0
    restart_s: list[float] = field(default_factory=list)  # wall seconds, kill -> running
    positions: list[Any] = field(default_factory=list)  # where each resume re-entered


def _bindings(protocol: Protocol, seed: int) -> RunBindings:
    cell = SimCell(protocol.cell, seed=seed)
    return RunBindings(
        cycler=SimCyclerChannel("ch0", cell.engine),
        impedance=SimImpedanceChannel("eis0", cell.engine),
    )


def _run_dir(out_dir: Path) -> Path:
    (root,) = [p for p in out_dir.iterdir() if p.is_dir()]
    return root


async def run_with_kills(
    protocol: Protocol,
    out_dir: Path,
    kill_at_s: Sequence[float],
    *,
    seed: int = 0,
    poll_s: float = 600.0,
    batch_iterations: int = 1,
    stage_every_s: float = 0.0,
) -> DrillResult:
    """Run ``protocol`` on an in-process simulated channel, killing the orchestrator at
    each simulated time in ``kill_at_s`` (seconds from the start) and resuming it.

    ``stage_every_s`` > 0 groups the staging log's writes as hardware runs do (a drill
    is over in a second of real time, so rows since the last journalled position are
    then lost at each kill and must come back from the instrument)."""
    loop = asyncio.get_running_loop()
    bindings = _bindings(protocol, seed)
    options = RunOptions(poll_s=poll_s, batch_iterations=batch_iterations)
    execs: list[Executor] = []
    req = RunRequest(
        protocol=protocol,
        protocol_yaml=dump_protocol_yaml(protocol),
        out_dir=out_dir,
        options=options,
        durable=False,
        staging=True,
        stage_every_s=stage_every_s,
    )
    t0 = loop.time()
    task: asyncio.Task[tuple[RunOutcome, Path]] = asyncio.create_task(
        execute_run(req, bindings=bindings, on_executor=execs.append), name="run"
    )
    result: DrillResult | None = None
    kills = 0
    restart: list[float] = []
    positions: list[Any] = []
    for t_kill in sorted(kill_at_s):
        delay = t0 + t_kill - loop.time()
        done, _ = await asyncio.wait({task}, timeout=max(0.0, delay))
        if done:
            break
        execs[-1].abandon()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        kills += 1
        root = _run_dir(out_dir)
        w0 = time.perf_counter()
        started = asyncio.Event()

        def on_executor(ex: Executor, _started: asyncio.Event = started) -> None:
            execs.append(ex)
            _started.set()

        task = asyncio.create_task(
            resume_run(
                root,
                bindings=bindings,
                options=options,
                durable=False,
                staging=True,
                stage_every_s=stage_every_s,
                on_executor=on_executor,
            ),
            name="run-resumed",
        )
        await started.wait()
        await asyncio.sleep(0)
        restart.append(time.perf_counter() - w0)
        resumed = execs[-1]._resume_from  # what the journal said
        positions.append(None if resumed is None else (resumed.get("unit") or {}).get("pos"))
    outcome, root = await task
    result = DrillResult(outcome, root, kills, restart, positions)
    return result
