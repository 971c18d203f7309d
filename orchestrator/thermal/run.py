"""Bind a furnace protocol to a station's furnace position and run it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labrig.drivers.capabilities import InstrumentError

from ..events import EventSink, RunState
from ..run.lifecycle import RunAborted
from ..run.request import RunRequest
from ..store import RunStore, new_run_id
from .executor import FurnaceExecutor, ThermalOutcome
from .instruments import open_thermal_instruments
from .options import ThermalOptions
from .plan import compile_thermal
from .samples import samples_of

__all__ = ["SIM_RECORD_PERIOD_S", "execute_thermal_run", "thermal_options"]

#: A dry run records every minute (a 2 K/min ramp moves 2 K between rows).
SIM_RECORD_PERIOD_S = 60.0


def thermal_options(req: RunRequest) -> ThermalOptions:
    """The request's options as furnace-run options (a record period from ``poll_s``)."""
    opts = req.options
    if isinstance(opts, ThermalOptions):
        return opts
    if opts is not None:
        return ThermalOptions(
            poll_s=opts.poll_s,
            telemetry_every_s=opts.telemetry_every_s,
            flush_every_s=opts.flush_every_s,
            safety_period_s=min(5.0, opts.poll_s),
        )
    return ThermalOptions(poll_s=SIM_RECORD_PERIOD_S if req.sim else 10.0)


async def execute_thermal_run(
    req: RunRequest,
    *,
    sinks: Sequence[EventSink] = (),
    on_progress: Callable[[Any], None] | None = None,
    on_executor: Callable[[Any], Any] | None = None,
) -> tuple[ThermalOutcome, Path]:
    """Run a furnace protocol to its end; returns the outcome and the run directory.

    Bad input (no furnace position, a gas line the position lacks, a step the furnace
    cannot run) is refused before any instrument is touched: the outcome is ``failed``
    with the reason naming it, and the run directory records the refusal.
    """
    protocol = req.protocol
    refusal: str | None = None
    try:
        position = req.station.position(req.position, kind="furnace")
        if position.kind != "furnace" or position.furnace is None:
            raise ValueError(
                f"position {position.name!r} is not a furnace position; a furnace protocol "
                "needs one (a station position with kind: furnace)"
            )
        plan = compile_thermal(protocol, tuple(position.gas))
    except ValueError as exc:  # StationError and PlanError are ValueErrors
        refusal = f"refused: {exc}"
    if refusal is not None:
        return _refused(req, refusal)
    options = thermal_options(req)
    samples = samples_of(protocol)
    run_id = req.run_id or new_run_id(protocol.name, samples[0] if samples else None)
    meta = {
        "kind": "thermal",
        "protocol": {"name": protocol.name, "version": protocol.version, "source": protocol.source},
        "cell": protocol.cell.model_dump(exclude_none=True) if protocol.cell else None,
        "samples": samples,
        "station": req.station.name,
        "position": position.name,
        "simulated": req.sim,
        "seed": req.seed,
        "record_period_s": options.poll_s,
    }
    store = RunStore.create(
        req.out_dir, run_id, protocol_yaml=req.protocol_yaml, meta=meta, durable=not req.sim,
        cell_files=False,
    )  # fmt: skip
    try:
        try:
            async with open_thermal_instruments(
                req.station,
                position,
                sim=req.sim,
                seed=req.seed,
                furnace_max_C=protocol.limits.furnace_max_C,
            ) as inst:
                ex = FurnaceExecutor(
                    run_id=run_id,
                    protocol=protocol,
                    plan=plan,
                    channel=position.name,
                    instruments=inst,
                    store=store,
                    options=options,
                    sinks=sinks,
                    on_progress=on_progress,
                )
                if on_executor is not None:
                    on_executor(ex)
                outcome = await ex.run()
        except (InstrumentError, OSError, RunAborted) as exc:
            # The instruments could not be opened: nothing was started.
            reason = f"could not open the furnace position's instruments: {exc}"
            store.finish(RunState.failed, reason)
            outcome = ThermalOutcome(run_id, RunState.failed, reason, 0, 0, 0.0)
    finally:
        store.close()
    return outcome, store.root


def _refused(req: RunRequest, reason: str) -> tuple[ThermalOutcome, Path]:
    protocol = req.protocol
    run_id = req.run_id or new_run_id(protocol.name)
    meta = {
        "kind": "thermal",
        "protocol": {"name": protocol.name, "version": protocol.version, "source": protocol.source},
        "samples": samples_of(protocol),
        "station": req.station.name,
        "position": req.position,
        "simulated": req.sim,
    }
    store = RunStore.create(
        req.out_dir, run_id, protocol_yaml=req.protocol_yaml, meta=meta, durable=not req.sim,
        cell_files=False,
    )  # fmt: skip
    try:
        store.finish(RunState.failed, reason)
    finally:
        store.close()
    return ThermalOutcome(run_id, RunState.failed, reason, 0, 0, 0.0), store.root
