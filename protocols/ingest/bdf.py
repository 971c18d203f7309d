"""Battery Data Format (BDF) CSV files, labrig's own exports included.

The Battery Data Alliance's package (``batterydf``) reads BDF through pandas and brings
RDF, plotting and web-request dependencies with it; reading a BDF table is one CSV parse,
so this reader is labrig's own, on Arrow's CSV reader. It takes both the preferred labels
(``Test Time / s``) and the machine labels (``test_time_second``).

Semantics: ``Current / A`` is positive while charging (BDF's and labrig's convention).
``Charging Capacity / Ah`` and ``Discharging Capacity / Ah`` only grow until reset (per
cycle in labrig's export, per step or never elsewhere): they are read as counters with
resets. Without them the current is integrated. ``Cycle Count / 1`` is the file's cycle,
``Step Count / 1`` (else ``Step Index / 1``) its step. A sidecar
``<file>.metadata.json`` (as labrig's export writes) supplies the cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ._model import IngestError, VendorData
from .normalize import counter_increments, integrate_current

__all__ = ["looks_like_bdf", "read_bdf"]

READER = "labrig.bdf"
VERSION = "1"

#: ours -> accepted labels (compared lower-cased, without spaces)
_LABELS: dict[str, tuple[str, ...]] = {
    "time": ("testtime/s", "test_time_second", "test_time_s"),
    "voltage": ("voltage/v", "voltage_volt", "voltage_v"),
    "current": ("current/a", "current_ampere", "current_a"),
    "cycle": ("cyclecount/1", "cycle_count", "cycle_index"),
    "step_count": ("stepcount/1", "step_count"),
    "step_index": ("stepindex/1", "step_index"),
    "charge": ("chargingcapacity/ah", "charging_capacity_ampere_hour", "charging_capacity_ah"),
    "discharge": ("dischargingcapacity/ah", "discharging_capacity_ampere_hour",
                  "discharging_capacity_ah"),
    "temperature": ("temperaturet1/degc", "temperature_t1_celsius", "temperature_t1_degc",
                    "ambienttemperature/degc", "ambient_temperature_celsius"),
}  # fmt: skip


def _key(label: str) -> str:
    return re.sub(r"\s+", "", label.strip().lower())


def _columns(header: list[str]) -> dict[str, str]:
    keys = {_key(h): h for h in header}
    out: dict[str, str] = {}
    for ours, labels in _LABELS.items():
        for lab in labels:
            if lab in keys:
                out[ours] = keys[lab]
                break
    return out


def _header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16)
    if b"\x00" in first:
        return []
    return [h.strip().strip('"') for h in first.decode("utf-8", errors="replace").split(",")]


def looks_like_bdf(path: Path) -> bool:
    """True for a CSV whose header has BDF's time, voltage and current columns."""
    try:
        cols = _columns(_header(path))
    except OSError:
        return False
    return all(c in cols for c in ("time", "voltage", "current"))


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(path.name + ".metadata.json")
    try:
        loaded = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def read_bdf(path: Path) -> VendorData:
    """Read a BDF CSV file (and its ``.metadata.json`` sidecar, if any)."""
    cols = _columns(_header(path))
    missing = [lab for c, lab in (("time", "Test Time / s"), ("voltage", "Voltage / V"),
                                  ("current", "Current / A")) if c not in cols]  # fmt: skip
    if missing:
        raise IngestError(path, f"not a BDF CSV file (no {', '.join(missing)} column)")
    types = {name: (pa.int64() if ours in ("cycle", "step_count", "step_index")
                    else pa.float64()) for ours, name in cols.items()}  # fmt: skip
    try:
        table = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(include_columns=list(types),
                                                       column_types=types),
        )  # fmt: skip
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(path, f"unreadable BDF CSV ({str(exc).splitlines()[0]})") from None
    n = table.num_rows
    if n == 0:
        raise IngestError(path, "BDF CSV with a header but no records")

    def col(ours: str, dtype: Any = np.float64, default: float = 0.0) -> Any:
        if ours not in cols:
            return np.full(n, default, dtype=dtype)
        return np.asarray(table.column(cols[ours]).to_numpy(zero_copy_only=False), dtype=dtype)

    t, i = col("time"), col("current")
    step = col("step_count" if "step_count" in cols else "step_index", np.int64)
    cyc = col("cycle", np.int64, 1)
    change = np.zeros(n, dtype=bool)
    change[1:] = (step[1:] != step[:-1]) | (cyc[1:] != cyc[:-1])
    segment = np.cumsum(change).astype(np.int64)
    if "charge" in cols and "discharge" in cols:
        dq = counter_increments(col("charge")) - counter_increments(col("discharge"))
    else:
        dq = integrate_current(t, i, segment)
    side = _sidecar(path)
    meta: dict[str, Any] = {}
    if isinstance(side.get("cell"), dict):
        meta["cell"] = side["cell"]
    if isinstance(side.get("source"), dict):
        meta["exported_by"] = side["source"]
    temp = col("temperature", default=np.nan) if "temperature" in cols else None
    return VendorData(
        path=path, vendor="BDF", reader=READER, reader_version=VERSION, time_s=t,
        current_A=i, voltage_V=col("voltage"), dq_Ah=dq, source_cycle=cyc,
        source_step=col("step_index", np.int64) if "step_index" in cols else step,
        segment=segment, kind_hint=np.zeros(n, np.int8), temperature_C=temp, meta=meta,
        cycle_column=cols.get("cycle", "(none)"),
    )  # fmt: skip
