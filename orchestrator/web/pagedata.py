"""What a run page asks for first, made once per state of the run's files (see
:mod:`.bodies`): the whole-run V/I/T view, the per-cycle table as columns, the newest
events. Blocking: call these in a worker thread.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from .bodies import Bodies, Encoded
from .rundata import RunNotFound, RunsDir
from .series import SeriesCache
from .source import merge_events

__all__ = [
    "CYCLE_PLOT",
    "cycle_columns",
    "cycles_plot",
    "first_events",
    "prefetch",
    "whole_series",
]

#: the per-cycle fields the run page plots
CYCLE_PLOT = (
    "cycle",
    "charge_capacity_mAh",
    "discharge_capacity_mAh",
    "charge_capacity_mAh_g",
    "discharge_capacity_mAh_g",
    "coulombic_efficiency_pct",
    "discharge_c_rate",
)


class Stored(Protocol):
    """What these read: a data source's run directories, series cache and answers."""

    runs: RunsDir
    series: SeriesCache
    bodies: Bodies

    def stored_version(self, run_id: str, what: str) -> str | None: ...


def _value(v: Any) -> Any:
    """A table value for JSON, exactly (NaN and infinities: null)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def cycle_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The plotted fields of per-cycle rows as columns (one list per field, in row
    order), their values as the table holds them."""
    return {
        "columns": {k: [_value(r.get(k)) for r in rows] for k in CYCLE_PLOT},
        "count": len(rows),
    }


def whole_series(src: Stored, run_id: str, n: int) -> Encoded:
    """The whole-run view at ``n`` pixel columns, ending ``"live":[]`` (the answer adds
    the live readings after ``meta["t_max"]``); :class:`RunNotFound` without files."""
    version = src.stored_version(run_id, "series")
    assert version is not None

    def make() -> Encoded:
        out = src.series.window(run_id, None, None, n)
        return Encoded.of({**out, "live": []}, {"t_max": out["t_max"]})

    # kept on disk once no staged tail is being written (a finished or a simulated run)
    staged = version.endswith("+staging")
    return src.bodies.get_or_make(run_id, f"series-{n}", version, make, keep=not staged)


def cycles_plot(src: Stored, run_id: str) -> Encoded | None:
    """The plotted per-cycle columns, or None when the table does not come from the run
    directory (a lab run on another PC: the caller asks the source)."""
    version = src.stored_version(run_id, "cycles")
    if version is None:
        return None
    return src.bodies.get_or_make(
        run_id, "cycles", version, lambda: Encoded.of(cycle_columns(src.runs.cycles(run_id))),
        keep=True,
    )  # fmt: skip


def first_events(
    src: Stored, run_id: str, limit: int, live: list[dict[str, Any]]
) -> Encoded | None:
    """The newest ``limit`` events (stored and ``live``), or None when they do not come
    from the run directory."""
    version = src.stored_version(run_id, "events")
    if version is None:
        return None
    seqs = [e.get("seq") for e in live]
    version += f"-{limit}-{len(live)}-{seqs[:1]}-{seqs[-1:]}"

    def make() -> Encoded:
        got, total = merge_events(src.runs.events_tail(run_id, limit), live, 0, limit)
        return Encoded.of({"events": got, "total": total})

    return src.bodies.get_or_make(run_id, "events", version, make)


def prefetch(src: Stored, run_id: str, live: list[dict[str, Any]]) -> None:
    """Make what a run page asks for first and that does not depend on the page's width:
    the cycle table and the newest events (call it in a worker thread as the page's HTML
    goes out; the page's own requests then find them made, or wait for this one maker).
    ``live``: the source's ``live_events``, read on the event loop's thread."""
    try:
        cycles_plot(src, run_id)
        first_events(src, run_id, 100, live)
    except (RunNotFound, OSError, ValueError):
        return  # the page's own requests report it
