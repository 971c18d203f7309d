"""Export a run's time series in the Battery Data Format (BDF) of the Battery Data Alliance.

Column labels are the BDF "preferred labels" (quantity / unit, units fixed). The
conversion is streamed chunk by chunk, so a run of any length exports in constant memory.

Conventions written into the sidecar ``<file>.metadata.json`` (and, for Parquet, into the
file's schema metadata under ``bdf``):

- ``Current / A`` is positive while charging the cell, negative while discharging
  (labrig's own convention; unchanged);
- ``Charging Capacity / Ah`` and ``Discharging Capacity / Ah`` count up from 0 within each
  cycle (the interval is the cycle, ``Cycle Count / 1``);
- ``Step Count / 1`` increases by one at every executed step, counted from 1;
  ``Step Index / 1`` is the record's position within its step, counted from 1;
- ``Unix Time / s`` is the run's start (``created`` in run.json, UTC) plus
  ``Test Time / s``; a run without a start time has no such column;
- ``Surface Temperature T1 / degC`` is the cycler's temperature channel (a probe on the
  cell). labrig records no separate ambient temperature, so ``Ambient Temperature / degC``
  is not written.

The labels are those of the BDF's published list (required: Test Time, Voltage, Current;
recommended: Unix Time, Cycle Count, Step Count, Ambient Temperature; the rest optional);
the test suite checks the export with the Battery Data Alliance's ``batterydf`` package.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .loader import KIND_NAMES, RunDirError, _kind_codes

__all__ = ["BDF_COLUMNS", "SIGN_CONVENTION", "export_bdf"]

#: BDF label -> source (labrig column or a derived quantity).
BDF_COLUMNS: dict[str, str] = {
    "Test Time / s": "time_s",
    "Unix Time / s": "(derived: run start from run.json + time_s)",
    "Voltage / V": "voltage_V",
    "Current / A": "current_A",
    "Cycle Count / 1": "cycle",
    "Step Count / 1": "(derived: executed-step counter)",
    "Step Index / 1": "(derived: record position within its step, from 1)",
    "Charging Capacity / Ah": "charge_capacity_Ah",
    "Discharging Capacity / Ah": "discharge_capacity_Ah",
    "Power / W": "(derived: voltage_V x current_A)",
    "Surface Temperature T1 / degC": "temperature_C",
}

SIGN_CONVENTION = (
    "Current / A is positive while charging the cell and negative while discharging; "
    "Charging Capacity / Ah and Discharging Capacity / Ah count up from 0 within each "
    "cycle (Cycle Count / 1)."
)

_SOURCE = ["time_s", "cycle", "step", "step_type", "current_A", "voltage_V",
           "charge_capacity_Ah", "discharge_capacity_Ah", "temperature_C"]  # fmt: skip


@dataclass
class _StepState:
    key: tuple[int, int, int] | None = None
    count: int = 0
    index: int = 0  # records of the current step seen so far
    unix_start: float | None = None


def _convert(table: pa.Table, state: _StepState) -> pa.Table:
    n = table.num_rows
    names = set(table.column_names)

    def col(name: str, dtype: Any = np.float64) -> Any:
        if name in names:
            return table.column(name).to_numpy().astype(dtype, copy=False)
        return np.full(n, np.nan if dtype == np.float64 else 0, dtype=dtype)

    t = col("time_s")
    cycle = col("cycle", np.int64)
    step = col("step", np.int64)
    kind = (
        _kind_codes(table.column("step_type")).astype(np.int64)
        if "step_type" in names
        else np.zeros(n, np.int64)
    )
    change = np.empty(n, dtype=bool)
    if n:
        if state.key is None:
            change[0] = True
        else:
            change[0] = (int(cycle[0]), int(step[0]), int(kind[0])) != state.key
        change[1:] = (cycle[1:] != cycle[:-1]) | (step[1:] != step[:-1]) | (kind[1:] != kind[:-1])
    step_count = state.count + np.cumsum(change)
    # position within the step; rows before the chunk's first step change continue the
    # step the last chunk ended in
    pos = np.arange(n, dtype=np.int64)
    seg_start = np.maximum.accumulate(np.where(change, pos, -1)) if n else pos
    index = np.where(seg_start >= 0, pos - seg_start + 1, state.index + pos + 1)
    if n:
        state.key = (int(cycle[-1]), int(step[-1]), int(kind[-1]))
        state.count = int(step_count[-1])
        state.index = int(index[-1])
    v = col("voltage_V")
    i = col("current_A")
    out: dict[str, Any] = {"Test Time / s": t}
    if state.unix_start is not None:
        out["Unix Time / s"] = state.unix_start + t
    out.update(
        {
            "Voltage / V": v,
            "Current / A": i,
            "Cycle Count / 1": cycle,
            "Step Count / 1": step_count.astype(np.int64),
            "Step Index / 1": index,
            "Charging Capacity / Ah": col("charge_capacity_Ah"),
            "Discharging Capacity / Ah": col("discharge_capacity_Ah"),
            "Power / W": v * i,
            "Surface Temperature T1 / degC": col("temperature_C"),
        }
    )
    return pa.table(out)


def _run_start(meta: dict[str, Any]) -> float | None:
    """The run's start as Unix seconds (run.json ``started`` or ``created``)."""
    for key in ("started", "created"):
        text = meta.get(key)
        if isinstance(text, str):
            try:
                return datetime.fromisoformat(text).timestamp()
            except ValueError:
                continue
    return None


def _chunks(root: Path) -> Iterator[pa.Table]:
    for f in sorted((root / "data").glob("part-*.parquet")):
        present = set(pq.read_schema(f).names)
        yield pq.read_table(f, columns=[c for c in _SOURCE if c in present])


def export_bdf(root: Path, out: Path | None = None, fmt: str = "csv") -> Path:
    """Write the run at ``root`` as ``<run_id>.bdf.csv`` or ``.bdf.parquet``.

    ``fmt`` is "csv" or "parquet"; ``out`` a file path (default: ``root/export/``).
    A sidecar ``<out>.metadata.json`` states the conventions and the cell. Returns the
    path written.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")
    root = Path(root)
    files = sorted((root / "data").glob("part-*.parquet"))
    if not files:
        raise RunDirError(f"{root}: no data/part-*.parquet chunks to export")
    meta: dict[str, Any] = {}
    try:
        loaded = json.loads((root / "run.json").read_text(encoding="utf-8"))
        meta = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        meta = {}
    run_id = str(meta.get("run_id") or root.name)
    if out is None:
        out = root / "export" / f"{run_id}.bdf.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    unix_start = _run_start(meta)
    columns = {k: v for k, v in BDF_COLUMNS.items() if unix_start is not None or "Unix" not in k}
    sidecar = {
        "format": "Battery Data Format (BDF), time series",
        "columns": columns,
        "conventions": SIGN_CONVENTION,
        "step_types": list(KIND_NAMES[1:]),
        "source": {"software": "labrig", "run_id": run_id},
        "protocol": meta.get("protocol"),
        "cell": meta.get("cell"),
        "simulated": meta.get("simulated"),
        "state": meta.get("state"),
    }
    state = _StepState(unix_start=unix_start)
    tmp = out.with_name(out.name + ".tmp")
    writer: Any = None
    try:
        for table in _chunks(root):
            bdf = _convert(table, state)
            if writer is None:
                if fmt == "csv":
                    opts = pacsv.WriteOptions(include_header=True, quoting_style="needed")
                    writer = pacsv.CSVWriter(str(tmp), bdf.schema, write_options=opts)
                else:
                    schema = bdf.schema.with_metadata({"bdf": json.dumps(sidecar, default=str)})
                    writer = pq.ParquetWriter(str(tmp), schema, compression="zstd")
                    bdf = bdf.replace_schema_metadata(schema.metadata)
            elif fmt == "parquet":
                bdf = bdf.replace_schema_metadata(writer.schema.metadata)
            writer.write_table(bdf)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(out)
    side = out.with_name(out.name + ".metadata.json")
    side.write_text(json.dumps(sidecar, indent=2, default=str), encoding="utf-8")
    return out
