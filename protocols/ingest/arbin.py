"""Arbin MITS Pro ``.res`` files (Microsoft Access databases), read through mdbtools.

A ``.res`` file is an Access database; the records are its ``Channel_Normal_Table``.
galvani's ``res2sqlite`` copies every table through ``mdb-export`` into SQLite with a
fixed schema, which fails on files from newer MITS Pro versions (columns it does not
know). This reader asks ``mdb-export`` (Debian package ``mdbtools``, the kept reader of
Access files) for the two tables it needs as CSV and parses them with Arrow.

Semantics: ``Current`` is in A, positive while charging (labrig's sign);
``Charge_Capacity`` and ``Discharge_Capacity`` (Ah) only grow until Arbin resets them (at
each of its cycles, or never, by version): they are read as counters with resets.
``Cycle_Index`` is Arbin's cycle, ``Step_Index`` the schedule's step.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ._model import IngestError, VendorData
from .normalize import counter_increments

__all__ = ["ACCESS_MAGIC", "read_res"]

ACCESS_MAGIC = (b"Standard Jet DB", b"Standard ACE DB")
_NEED = ("Test_Time", "Step_Index", "Cycle_Index", "Current", "Voltage",
         "Charge_Capacity", "Discharge_Capacity")  # fmt: skip


def _mdb_export(path: Path, table: str) -> bytes:
    exe = shutil.which("mdb-export")
    if exe is None:
        raise IngestError(
            path, "reading Arbin .res files needs mdb-export (install the mdbtools package)"
        )
    try:
        done = subprocess.run([exe, str(path), table], capture_output=True, timeout=600,
                              check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IngestError(path, f"mdb-export failed ({exc})") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise IngestError(
            path, f"damaged Arbin .res file (mdb-export: {why[0] if why else 'failed'})"
        )
    return done.stdout


def _global_meta(path: Path) -> dict[str, Any]:
    try:
        raw = _mdb_export(path, "Global_Table")
        table = pacsv.read_csv(pa.BufferReader(raw))
    except (IngestError, pa.ArrowInvalid):
        return {}
    if table.num_rows == 0:
        return {}
    row = {k.lower(): v[0] for k, v in table.to_pydict().items()}
    meta: dict[str, Any] = {}
    for ours, theirs in (("test_name", "test_name"), ("procedure", "schedule_file_name"),
                         ("channel", "channel_number"), ("comments", "comments")):  # fmt: skip
        if row.get(theirs) not in (None, ""):
            meta[ours] = str(row[theirs])
    mass = row.get("mass")
    if isinstance(mass, int | float) and mass > 0:
        meta["cam_mass_mg"] = float(mass) * 1e3  # MITS Pro stores grams
    cap = row.get("capacity")
    if isinstance(cap, int | float) and cap > 0:
        meta["nominal_capacity_mAh"] = float(cap) * 1e3
    return meta


def read_res(path: Path) -> VendorData:
    """Read an Arbin ``.res`` file."""
    with open(path, "rb") as fh:
        head = fh.read(32)
    if not any(m in head for m in ACCESS_MAGIC):
        raise IngestError(path, "not an Arbin .res file (expected a Microsoft Access database)")
    raw = _mdb_export(path, "Channel_Normal_Table")
    try:
        table = pacsv.read_csv(pa.BufferReader(raw))
    except pa.ArrowInvalid as exc:
        raise IngestError(path, f"unreadable Channel_Normal_Table ({exc})") from None
    missing = [c for c in _NEED if c not in table.column_names]
    if missing:
        raise IngestError(path, f"Arbin file without the column(s) {', '.join(missing)}")
    if table.num_rows == 0:
        raise IngestError(path, "Arbin file with no records")

    def col(name: str, dtype: Any = np.float64) -> Any:
        return np.asarray(table.column(name).to_numpy(), dtype=dtype)

    if "Data_Point" in table.column_names:
        order = np.argsort(col("Data_Point"), kind="stable")
        table = table.take(pa.array(order))
    step = col("Step_Index", np.int64)
    cyc = col("Cycle_Index", np.int64)
    change = np.zeros(step.shape, dtype=bool)
    change[1:] = (step[1:] != step[:-1]) | (cyc[1:] != cyc[:-1])
    dq = counter_increments(col("Charge_Capacity")) - counter_increments(col("Discharge_Capacity"))
    return VendorData(
        path=path, vendor="Arbin", reader="mdbtools", reader_version=_mdb_version(),
        time_s=col("Test_Time"), current_A=col("Current"), voltage_V=col("Voltage"), dq_Ah=dq,
        source_cycle=cyc, source_step=step, segment=np.cumsum(change).astype(np.int64),
        kind_hint=np.zeros(step.shape, np.int8), meta=_global_meta(path),
        cycle_column="Cycle_Index",
    )  # fmt: skip


def _mdb_version() -> str:
    exe = shutil.which("mdb-ver")
    if exe is None:
        return "unknown"
    try:
        done = subprocess.run([exe, "-M"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.decode(errors="replace").strip() or "unknown"
