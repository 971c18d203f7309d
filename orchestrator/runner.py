"""Bind a protocol to a station position and run it: the one entry point the CLI uses."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from labrig.protocols.models import Protocol

from .events import EventSink, RunState
from .executor import Executor, RunOptions, RunOutcome
from .journal import Journal
from .run.bindings import CHANNEL_BOUND, RunBindings, bind_channel
from .run.damage import check_instrument, open_checked
from .run.instruments import open_cell_bindings as bind_instruments
from .run.request import Resumption, RunRequest
from .station import Position, StationConfig
from .store import RunStore, new_run_id

__all__ = ["RunRequest", "bind_instruments", "execute_run", "is_thermal", "resume_run"]


def is_thermal(protocol: Protocol) -> bool:
    """A furnace protocol (anneal, calcination): furnace and gas steps, no cell."""
    from labrig.protocols.models import FurnaceStep, GasStep

    steps = protocol.steps()
    return any(isinstance(s, FurnaceStep | GasStep) for s in steps) and not protocol.drives_cell()


async def execute_run(
    req: RunRequest,
    *,
    sinks: Sequence[EventSink] = (),
    on_progress: Callable[[Executor], None] | None = None,
    on_executor: Callable[[Executor], Any] | None = None,
    bindings: RunBindings | None = None,
) -> tuple[RunOutcome, Path]:
    """Run ``req`` to its end; returns the outcome and the run directory.

    ``bindings`` replaces opening the station's instruments (the scheduler wraps them;
    tests hand in instruments they keep).
    """
    if is_thermal(req.protocol):
        from .thermal import execute_thermal_run

        result: tuple[RunOutcome, Path] = await execute_thermal_run(
            req, sinks=sinks, on_progress=on_progress, on_executor=on_executor
        )
        return result
    protocol = req.protocol
    cell = protocol.cell
    position = req.station.position(req.position)
    run_id = req.run_id or new_run_id(protocol.name, cell.cell_id if cell else None)
    meta = {
        "protocol": {"name": protocol.name, "version": protocol.version, "source": protocol.source},
        "cell": cell.model_dump(exclude_none=True) if cell else None,
        "station": req.station.name,
        "position": position.name,
        "simulated": req.sim,
        "seed": req.seed,
        "station_config": req.station.subset(position.name).model_dump(mode="json"),
        CHANNEL_BOUND: True,
    }
    # Dry runs skip fsync and the staging log: nothing real is at stake and they would
    # dominate their time. Hardware runs have both.
    durable = (not req.sim) if req.durable is None else req.durable
    async with contextlib.AsyncExitStack() as stack:
        if bindings is None:
            # the instruments first: one out of reach leaves no run directory behind
            bindings = await stack.enter_async_context(
                bind_instruments(req.station, position, cell, sim=req.sim, seed=req.seed)
            )
        return await _start(req, run_id, meta, durable, position, sinks=sinks,
                            on_progress=on_progress, on_executor=on_executor,
                            bindings=bindings)  # fmt: skip


async def _start(
    req: RunRequest,
    run_id: str,
    meta: dict[str, Any],
    durable: bool,
    position: Position,
    *,
    sinks: Sequence[EventSink],
    on_progress: Callable[[Executor], None] | None,
    on_executor: Callable[[Executor], Any] | None,
    bindings: RunBindings,
) -> tuple[RunOutcome, Path]:
    protocol = req.protocol
    store = RunStore.create(
        req.out_dir,
        run_id,
        protocol_yaml=req.protocol_yaml,
        meta=meta,
        durable=durable,
        staging=req.staging,
        stage_every_s=_stage_every(req.stage_every_s, durable),
    )
    journal = Journal(store.root / "journal.sqlite", durable=durable)
    options = req.options or default_options(req.sim)
    return await _drive(
        store, journal, protocol, req.station, position, run_id,
        sim=req.sim, seed=req.seed, options=options, sinks=sinks, on_progress=on_progress,
        on_executor=on_executor, bindings=bindings, resume=False, meta=meta,
    )  # fmt: skip


async def resume_run(
    run_dir: Path,
    *,
    station: StationConfig | None = None,
    sim: bool | None = None,
    sinks: Sequence[EventSink] = (),
    on_progress: Callable[[Executor], None] | None = None,
    on_executor: Callable[[Executor], Any] | None = None,
    bindings: RunBindings | None = None,
    options: RunOptions | None = None,
    durable: bool | None = None,
    staging: bool | None = None,
    stage_every_s: float | None = None,
) -> tuple[RunOutcome, Path]:
    """Continue a run after the orchestrator stopped (killed, crashed, PC restarted).

    Reads the journal, asks the instrument what it is doing (a block that kept running
    is adopted, not restarted), and goes on at the right step and cycle, storing every
    record exactly once. A furnace run (``"kind": "thermal"``) goes to
    :func:`orchestrator.thermal.resume_thermal_run`. Raises :class:`JournalCorrupt` rather
    than guess.
    """
    if json.loads((run_dir / "run.json").read_text()).get("kind") == "thermal":
        from .thermal import resume_thermal_run

        thermal: tuple[RunOutcome, Path] = await resume_thermal_run(
            run_dir, station=station, sim=sim, sinks=sinks, on_progress=on_progress,
            on_executor=on_executor, options=options, durable=durable,
        )  # fmt: skip
        return thermal
    r = Resumption.read(run_dir, station=station, sim=sim, durable=durable)
    # checked as a whole, files and instrument, before anything is changed or sent
    journal, store = open_checked(
        run_dir, durable=r.durable, staging=staging,
        stage_every_s=_stage_every(stage_every_s, r.durable),
    )  # fmt: skip

    async def attached(b: RunBindings) -> None:
        await check_instrument(run_dir, b.cycler, journal)
        store.reconcile_events(journal)
        r.mark_resumed(store)

    position = r.station.position(r.meta["position"])
    opts = options or default_options(r.sim)
    return await _drive(
        store, journal, r.protocol, r.station, position, r.run_id,
        sim=r.sim, seed=r.seed, options=opts, sinks=sinks,
        on_progress=on_progress, on_executor=on_executor, bindings=bindings, resume=True,
        attached=attached, meta=r.meta,
    )  # fmt: skip


async def _drive(
    store: RunStore,
    journal: Journal,
    protocol: Protocol,
    station: StationConfig,
    position: Position,
    run_id: str,
    *,
    sim: bool,
    seed: int,
    options: RunOptions,
    sinks: Sequence[EventSink],
    on_progress: Callable[[Executor], None] | None,
    on_executor: Callable[[Executor], Any] | None,
    bindings: RunBindings | None,
    resume: bool,
    meta: dict[str, Any],
    attached: Callable[[RunBindings], Awaitable[None]] | None = None,
) -> tuple[RunOutcome, Path]:
    cell = protocol.cell
    try:
        async with contextlib.AsyncExitStack() as stack:
            # file work off the event loop; its end waits for the run's final writes
            await stack.enter_async_context(store.writing(journal))
            if bindings is None:
                bindings = await stack.enter_async_context(
                    bind_instruments(station, position, cell, sim=sim, seed=seed)
                )
            # the run's tests are named for it, and the instrument's are taken for its
            # own only if so named (before the damage check asks the instrument)
            bind_channel(bindings.cycler, run_id, meta)
            if attached is not None:
                await attached(bindings)  # a damaged run stops here, nothing sent
            ex = Executor(
                run_id=run_id,
                protocol=protocol,
                cell=cell,
                channel=position.name,
                bindings=bindings,
                store=store,
                journal=journal,
                sinks=sinks,
                options=options,
                on_progress=on_progress,
            )
            if resume:
                ex.resume_from(journal)
            if on_executor is not None:
                on_executor(ex)
            outcome = await ex.run()
    finally:
        journal.close()
        store.close()
    return _final_writes_checked(outcome, store), store.root


def _final_writes_checked(outcome: RunOutcome, store: RunStore) -> RunOutcome:
    """A run whose last writes failed (a full disk) did not finish."""
    err = store.write_error
    if err is None or outcome.state is not RunState.finished:
        return outcome
    return dataclasses.replace(outcome, state=RunState.failed, reason=f"storage failed: {err}")


# Durable runs write and fsync their staging log at most this often (and always before
# the journal records a position): rows in between are still on the instrument, which a
# resume reads again. Each write costs about 0.7 ms of CPU and an fsync whatever it
# holds: every 10 s, a station of 1,024 runs spent 4 % of a core on them.
STAGE_EVERY_S = 30.0


def _stage_every(asked: float | None, durable: bool) -> float:
    if asked is not None:
        return asked
    return STAGE_EVERY_S if durable else 0.0


def default_options(sim: bool) -> RunOptions:
    """How often a run polls and collects unless told otherwise."""
    if sim:
        # A dry run has nobody waiting on live data: poll the simulated instrument every
        # 10 simulated minutes (up to 6 simulated hours while the block's steps show it
        # has much longer to run) and collect records every 6 simulated hours.
        return RunOptions(
            poll_s=600.0, max_poll_s=6 * 3600.0, collect_s=6 * 3600.0, batch_iterations=25
        )
    return RunOptions(poll_s=10.0)
