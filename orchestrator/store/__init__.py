"""The run directory: everything a run leaves behind, written as it goes.

```
runs/<run-id>/
  run.json         what ran: protocol, cell, station, versions, state, times
  protocol.yaml    the protocol exactly as run
  journal.sqlite   durable position and event log (see orchestrator.journal)
  data/            time series as Parquet chunks, readable while the run goes on
  cycles.parquet   one row per cycle (also cycles.csv)
  eis/             one table per impedance spectrum, named by cycle
  events.jsonl     every event, one JSON object per line
```

Chunks are written to a temporary name and renamed, so a reader (or a crash) never sees a
half-written file. Units are in the column names. While a run goes on, the file work runs
on a worker thread (:mod:`.writer`), never on the event loop the runs share.
"""

from __future__ import annotations

from labrig.protocols.rundir import CYCLE_COLUMNS, DATA_COLUMNS

from .reopen import StoreDamaged
from .runstore import RunStore, new_run_id, wall_iso
from .staging import STAGING_BATCHES, StagingDamaged
from .writer import StorageBehind

__all__ = [
    "CYCLE_COLUMNS",
    "DATA_COLUMNS",
    "STAGING_BATCHES",
    "RunStore",
    "StagingDamaged",
    "StorageBehind",
    "StoreDamaged",
    "new_run_id",
    "wall_iso",
]
