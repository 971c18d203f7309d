"""Bind a furnace protocol to a station's furnace position and run it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labrig.drivers.capabilities import InstrumentError
from labrig.protocols.models import Protocol

from ..events import EventSink, RunState
from ..journal import Journal
from ..run.lifecycle import RunAborted, RunOptions
from ..run.request import Resumption, RunRequest
from ..station import Position, StationConfig
from ..store import RunStore, new_run_id
from .executor import FurnaceExecutor, ThermalOutcome
from .instruments import open_thermal_instruments
from .options import ThermalOptions
from .plan import ThermalPlan, compile_thermal
from .samples import samples_of

__all__ = ["SIM_RECORD_PERIOD_S", "execute_thermal_run", "resume_thermal_run", "thermal_options"]

#: A dry run records every minute (a 2 K/min ramp moves 2 K between rows).
SIM_RECORD_PERIOD_S = 60.0


def thermal_options(opts: RunOptions | None, *, sim: bool) -> ThermalOptions:
    """A run's options as furnace-run options (a record period from ``poll_s``)."""
    if isinstance(opts, ThermalOptions):
        return opts
    if opts is not None:
        return ThermalOptions(
            poll_s=opts.poll_s,
            telemetry_every_s=opts.telemetry_every_s,
            flush_every_s=opts.flush_every_s,
            safety_period_s=min(5.0, opts.poll_s),
        )
    return ThermalOptions(poll_s=SIM_RECORD_PERIOD_S if sim else 10.0)


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
    options = thermal_options(req.options, sim=req.sim)
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
        "station_config": req.station.subset(position.name).model_dump(mode="json"),
    }
    durable = not req.sim if req.durable is None else req.durable
    store = RunStore.create(
        req.out_dir, run_id, protocol_yaml=req.protocol_yaml, meta=meta, durable=durable,
        cell_files=False,
    )  # fmt: skip
    journal = Journal(store.root / "journal.sqlite", durable=durable)
    run = _Drive(protocol, plan, req.station, position, run_id, sim=req.sim, seed=req.seed)
    return await run(store, journal, options, sinks, on_progress, on_executor, resume=False)


async def resume_thermal_run(
    run_dir: Path,
    *,
    station: StationConfig | None = None,
    sim: bool | None = None,
    sinks: Sequence[EventSink] = (),
    on_progress: Callable[[Any], None] | None = None,
    on_executor: Callable[[Any], Any] | None = None,
    options: RunOptions | None = None,
    durable: bool | None = None,
) -> tuple[ThermalOutcome, Path]:
    """Continue a furnace run after the orchestrator stopped (killed, crashed, rebooted).

    The controller kept running its programme: this re-attaches to it if it is the one
    the journal says the run loaded (read back and compared), and goes on recording
    after the rows the run had staged. Raises :class:`JournalCorrupt` rather than guess.
    """
    r = Resumption.read(run_dir, station=station, sim=sim, durable=durable)
    position = r.station.position(r.meta["position"], kind="furnace")
    plan = compile_thermal(r.protocol, tuple(position.gas))
    journal = Journal(run_dir / "journal.sqlite", durable=r.durable)
    store = RunStore.open_existing(run_dir, durable=r.durable)
    store.cell_files = False
    store.reconcile_events(journal)
    r.mark_resumed(store)
    if options is None:
        options = RunOptions(poll_s=float(r.meta.get("record_period_s", 10.0)))
    run = _Drive(r.protocol, plan, r.station, position, r.run_id, sim=r.sim, seed=r.seed)
    opts = thermal_options(options, sim=r.sim)
    return await run(store, journal, opts, sinks, on_progress, on_executor, resume=True)


@dataclass
class _Drive:
    """Open a furnace position's instruments and run (or resume) one furnace run."""

    protocol: Protocol
    plan: ThermalPlan
    station: StationConfig
    position: Position
    run_id: str
    sim: bool
    seed: int

    async def __call__(
        self,
        store: RunStore,
        journal: Journal,
        options: ThermalOptions,
        sinks: Sequence[EventSink],
        on_progress: Callable[[Any], None] | None,
        on_executor: Callable[[Any], Any] | None,
        *,
        resume: bool,
    ) -> tuple[ThermalOutcome, Path]:
        try:
            try:
                async with open_thermal_instruments(
                    self.station,
                    self.position,
                    sim=self.sim,
                    seed=self.seed,
                    furnace_max_C=self.protocol.limits.furnace_max_C,
                ) as inst:
                    ex = FurnaceExecutor(
                        run_id=self.run_id,
                        protocol=self.protocol,
                        plan=self.plan,
                        channel=self.position.name,
                        instruments=inst,
                        store=store,
                        options=options,
                        journal=journal,
                        sinks=sinks,
                        on_progress=on_progress,
                    )
                    if resume:
                        ex.resume_from(journal)
                    if on_executor is not None:
                        on_executor(ex)
                    outcome = await ex.run()
            except (InstrumentError, OSError, RunAborted) as exc:
                # The instruments could not be opened: nothing was started (a resumed
                # run stays resumable: the controller may still run its programme).
                reason = f"could not open the furnace position's instruments: {exc}"
                if not resume:
                    store.finish(RunState.failed, reason)
                outcome = ThermalOutcome(self.run_id, RunState.failed, reason, 0, 0, 0.0)
        finally:
            journal.close()
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
