"""Helpers shared by tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from labrig.orchestrator.clock import new_virtual_loop

T = TypeVar("T")


def run_virtual_strict(coro: Coroutine[Any, Any, T], *, grace_s: float = 0.0) -> T:
    """Run ``coro`` on a virtual-time loop; fail if it leaves tasks behind."""

    async def wrapper() -> T:
        result = await coro
        await asyncio.sleep(0)
        me = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for t in leaked:
            t.cancel()
        assert not leaked, f"leaked tasks: {[(t.get_name(), t.get_coro()) for t in leaked]}"
        return result

    with asyncio.Runner(loop_factory=lambda: new_virtual_loop(grace_s)) as runner:
        return runner.run(wrapper())


def stored_rows(run: Path) -> Any:
    """The rows a run directory's data holds (chunks and staging log), by seq, as a
    pandas frame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labrig.orchestrator.store.staging import read_staging

    parts = [pq.read_table(p) for p in sorted((run / "data").glob("part-*.parquet"))]
    staged = read_staging(sorted((run / "data").glob("staging-*.arrow")))
    tables = parts + [b.table for b in staged.batches]
    names = tables[0].column_names
    rows = pa.concat_tables([t.select(names) for t in tables]).to_pandas()
    return rows.drop_duplicates("record_seq").sort_values("record_seq")
