"""The furnace run's time series and summary files.

``thermal.parquet`` in the run directory, one row per record period::

    time_s, step, setpoint_C, temperature_C, output_pct,
    flow_<line>_sccm, flow_setpoint_<line>_sccm   (one pair per gas line)

``step`` indexes the protocol's steps (loops expanded; -1 outside any step).
``temperature_C`` is NaN where the thermocouple read open. ``summary.json`` holds the
results (see :mod:`orchestrator.thermal.summary`). Both files are written to a temporary
name and renamed, so a reader never sees half a file.

While the run goes on, every row is also appended to ``thermal.staging.jsonl`` as it is
recorded (one JSON array per line, fsynced on durable stores), so a killed process loses
no row: a resumed run reads them back (:meth:`ThermalRecorder.restore`). The file is
removed once ``thermal.parquet`` holds every row.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..events import RunState
from .plan import ThermalPlan
from .summary import summarise

__all__ = ["SERIES_FILE", "STAGING_FILE", "SUMMARY_FILE", "ThermalRecorder", "read_series"]

SERIES_FILE = "thermal.parquet"
SUMMARY_FILE = "summary.json"
STAGING_FILE = "thermal.staging.jsonl"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ThermalRecorder:
    """Rows in memory (a furnace run has thousands, not millions), written as Parquet."""

    def __init__(self, gas_lines: list[str]) -> None:
        self.gas_lines = gas_lines
        names = ["time_s", "step", "setpoint_C", "temperature_C", "output_pct"]
        for line in gas_lines:
            names += [f"flow_{line}_sccm", f"flow_setpoint_{line}_sccm"]
        self.columns: dict[str, list[float]] = {n: [] for n in names}
        self._last_flush: float | None = None
        self._staging: Any = None  # the open staging log (see :meth:`stage_to`)
        self._durable = False

    def stage_to(self, root: Path, *, durable: bool) -> None:
        """Append every row from now on to ``root``'s staging log as it is recorded."""
        self._staging = open(root / STAGING_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._durable = durable

    def restore(self, root: Path) -> None:
        """Take back the rows a killed run had staged (a torn last line is cut off)."""
        path = root / STAGING_FILE
        if not path.exists():
            return
        good = 0
        with open(path, "rb+") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    values = json.loads(line)
                except ValueError:
                    break
                if len(values) != len(self.columns):
                    break
                for column, value in zip(self.columns.values(), values, strict=True):
                    column.append(value)
                good += len(line)
            f.truncate(good)

    def close(self) -> None:
        if self._staging is not None:
            self._staging.close()
            self._staging = None

    @property
    def rows(self) -> int:
        return len(self.columns["time_s"])

    def add(
        self,
        time_s: float,
        step: int,
        setpoint_C: float,
        temperature_C: float,
        output_pct: float,
        flows: dict[str, float],
        flow_setpoints: dict[str, float],
    ) -> None:
        c = self.columns
        c["time_s"].append(time_s)
        c["step"].append(step)
        c["setpoint_C"].append(setpoint_C)
        c["temperature_C"].append(temperature_C)
        c["output_pct"].append(output_pct)
        for line in self.gas_lines:
            c[f"flow_{line}_sccm"].append(flows.get(line, math.nan))
            c[f"flow_setpoint_{line}_sccm"].append(flow_setpoints.get(line, 0.0))
        if self._staging is not None:
            self._staging.write(json.dumps([v[-1] for v in c.values()]) + "\n")
            self._staging.flush()
            if self._durable:
                os.fsync(self._staging.fileno())

    def arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        return {
            k: np.asarray(v, dtype=np.int32 if k == "step" else np.float64)
            for k, v in self.columns.items()
        }

    def write_series(self, root: Path) -> None:
        table = pa.table(self.arrays())
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        _atomic_write(root / SERIES_FILE, sink.getvalue().to_pybytes())

    def maybe_flush(self, root: Path, now: float, every_s: float) -> None:
        """On hardware: rewrite the series now and then so a crash loses little."""
        if self._last_flush is None:
            self._last_flush = now
        elif now - self._last_flush >= every_s:
            self.write_series(root)
            self._last_flush = now

    def finish(
        self, root: Path, plan: ThermalPlan, state: RunState, reason: str | None
    ) -> dict[str, Any]:
        """Write the series and ``summary.json``; return the summary."""
        self.write_series(root)
        self.close()
        (root / STAGING_FILE).unlink(missing_ok=True)  # the series holds every row now
        arrays = self.arrays()
        cols = {k: v.astype(np.float64) for k, v in arrays.items()}
        summary = summarise(plan.steps, plan.labels, cols, list(plan.gas_lines), plan.peak_C)
        summary = {"state": state.value, "reason": reason, **summary}
        text = json.dumps(_finite(summary), indent=2)
        _atomic_write(root / SUMMARY_FILE, text.encode())
        return summary


def _finite(v: Any) -> Any:
    # JSON has no NaN: a missing figure is null.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def read_series(run_dir: Path) -> dict[str, np.ndarray[Any, Any]]:
    """A furnace run's time series as numpy arrays by column."""
    table = pq.read_table(run_dir / SERIES_FILE)
    return {name: table.column(name).to_numpy() for name in table.column_names}
