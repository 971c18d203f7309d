"""Bind a protocol to a station position and run it: the one entry point the CLI uses."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.models import CellSpec, Protocol

from .events import EventSink
from .executor import Executor, RunBindings, RunOptions, RunOutcome
from .journal import Journal
from .station import DEFAULT_STATION, Position, StationConfig
from .store import RunStore, new_run_id

__all__ = ["RunRequest", "bind_instruments", "execute_run"]


@dataclass
class RunRequest:
    protocol: Protocol
    protocol_yaml: str
    out_dir: Path
    station: StationConfig = DEFAULT_STATION
    position: str | None = None
    sim: bool = True
    seed: int = 0
    options: RunOptions | None = None
    run_id: str | None = None


@contextlib.asynccontextmanager
async def bind_instruments(
    station: StationConfig, position: Position, cell: CellSpec | None, *, sim: bool, seed: int
) -> AsyncIterator[RunBindings]:
    """Open the instruments serving ``position`` (simulated when ``sim``) for one run."""
    if sim:
        from .simstation import open_sim_bindings

        async with open_sim_bindings(station, position, cell, seed=seed) as bindings:
            yield bindings
        return
    from .hardware import open_hardware_bindings

    async with open_hardware_bindings(station, position) as bindings:
        yield bindings


async def execute_run(
    req: RunRequest,
    *,
    sinks: Sequence[EventSink] = (),
    on_progress: Callable[[Executor], None] | None = None,
    on_executor: Callable[[Executor], Any] | None = None,
) -> tuple[RunOutcome, Path]:
    """Run ``req`` to its end; returns the outcome and the run directory."""
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
    }
    # Dry runs skip fsync: nothing real is at stake and it would dominate their time.
    durable = not req.sim
    store = RunStore.create(
        req.out_dir, run_id, protocol_yaml=req.protocol_yaml, meta=meta, durable=durable
    )
    journal = Journal(store.root / "journal.sqlite", durable=durable)
    try:
        async with bind_instruments(
            req.station, position, cell, sim=req.sim, seed=req.seed
        ) as bindings:
            options = req.options or RunOptions(poll_s=600.0 if req.sim else 10.0)
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
            if on_executor is not None:
                on_executor(ex)
            outcome = await ex.run()
    finally:
        journal.close()
        store.close()
    return outcome, store.root
