"""Read a run directory fast, whatever state it is in.

A run may be finished, still going (chunk files only, no ``cycles.parquet`` yet) or have
crashed (a ``.tmp`` chunk left behind, an unreadable file, no ``run.json``). :func:`load_run`
reads what is there and lists what is missing or broken in :attr:`RunData.problems`
instead of raising; only a path that is not a directory at all is an error.

The time series is kept as plain numpy arrays (one per column) rather than a DataFrame:
the per-cycle and per-step reductions work on sorted segment boundaries with
``np.*.reduceat``, which is several times faster than a pandas groupby on millions of rows.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..rundir import DATA_COLUMNS

__all__ = [
    "KIND_CODES",
    "KIND_NAMES",
    "RunData",
    "RunDirError",
    "Spectrum",
    "TimeSeries",
    "load_run",
    "load_spectrum",
]

#: step_type values of the run store, with a small integer code each (unknown -> 0).
KIND_NAMES: tuple[str, ...] = (
    "unknown",
    "charge",
    "discharge",
    "rest",
    "ocv",
    "hold",
    "pulse_charge",
    "pulse_discharge",
    "eis",
)
KIND_CODES: dict[str, int] = {name: i for i, name in enumerate(KIND_NAMES)}
CHARGE_CODES = (KIND_CODES["charge"], KIND_CODES["pulse_charge"])
DISCHARGE_CODES = (KIND_CODES["discharge"], KIND_CODES["pulse_discharge"])
REST_CODES = (KIND_CODES["rest"], KIND_CODES["ocv"])
PULSE_CODES = (KIND_CODES["pulse_charge"], KIND_CODES["pulse_discharge"])

_ALL_COLUMNS = DATA_COLUMNS
_NUMERIC_DTYPES: dict[str, Any] = {
    "time_s": np.float64,
    "cycle": np.int32,
    "step": np.int32,
    "current_A": np.float64,
    "voltage_V": np.float64,
    "charge_capacity_Ah": np.float64,
    "discharge_capacity_Ah": np.float64,
    "temperature_C": np.float64,
    "record_seq": np.int64,
}


class RunDirError(ValueError):
    """The path given is not a run directory that can be read at all."""


@dataclass
class TimeSeries:
    """The run's records as numpy columns, sorted by record order.

    ``kind`` holds the step type as a code of :data:`KIND_NAMES`; columns that were not
    requested or not present are absent from :attr:`cols`.
    """

    cols: dict[str, npt.NDArray[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        t = self.cols.get("time_s")
        return 0 if t is None else int(t.shape[0])

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.cols[name]

    def __contains__(self, name: object) -> bool:
        return name in self.cols

    @property
    def kind(self) -> npt.NDArray[np.int8]:
        return self.cols["kind"]

    def to_pandas(self) -> pd.DataFrame:
        """The records as a DataFrame (``step_type`` as a categorical)."""
        data: dict[str, Any] = {k: v for k, v in self.cols.items() if k != "kind"}
        if "kind" in self.cols:
            data["step_type"] = pd.Categorical.from_codes(
                self.cols["kind"].astype(np.int16), categories=pd.Index(list(KIND_NAMES))
            )
        return pd.DataFrame(data)


@dataclass
class Spectrum:
    """One impedance spectrum of ``eis/`` (z_imag as measured: negative for arcs)."""

    name: str
    cycle: int | None
    frequency_Hz: npt.NDArray[np.float64]
    z_real_ohm: npt.NDArray[np.float64]
    z_imag_ohm: npt.NDArray[np.float64]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def z(self) -> npt.NDArray[np.complex128]:
        return self.z_real_ohm + 1j * self.z_imag_ohm


@dataclass
class RunData:
    """Everything read from one run directory, plus a list of what is missing."""

    root: Path
    meta: dict[str, Any]
    series: TimeSeries
    stored_cycles: pd.DataFrame | None
    spectra: list[Spectrum]
    events: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.root.name)

    @property
    def state(self) -> str:
        return str(self.meta.get("state") or "unknown")

    @property
    def cell(self) -> dict[str, Any]:
        cell = self.meta.get("cell")
        return cell if isinstance(cell, dict) else {}

    @property
    def cam_mass_g(self) -> float | None:
        """Cathode active mass in g from run.json (cam_mass_mg, or composite x fraction)."""
        cell = self.cell
        m = _as_float(cell.get("cam_mass_mg"))
        if m is None:
            comp = _as_float(cell.get("composite_mass_mg"))
            frac = _as_float(cell.get("active_fraction"))
            if comp is not None and frac is not None:
                m = comp * frac
        return m * 1e-3 if m is not None and m > 0 else None

    @property
    def one_c_A(self) -> float | None:
        """The current of 1C: CAM mass x specific current, else nominal capacity / 1 h."""
        m = self.cam_mass_g
        basis = _as_float(self.cell.get("c_rate_basis_mA_per_g"))
        if m is not None and basis is not None and basis > 0:
            return m * basis * 1e-3
        nominal = _as_float(self.cell.get("nominal_capacity_mAh"))
        return nominal * 1e-3 if nominal is not None and nominal > 0 else None


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _read_chunk(path: Path, columns: list[str]) -> pa.Table:
    schema_names = set(pq.read_schema(path).names)
    present = [c for c in columns if c in schema_names]
    return pq.read_table(path, columns=present, use_threads=True)


def _kind_codes(col: pa.ChunkedArray) -> npt.NDArray[np.int8]:
    """Map a (dictionary or plain string) step_type column to KIND codes, per chunk."""
    parts: list[npt.NDArray[np.int8]] = []
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            lut = np.array(
                [KIND_CODES.get(str(s), 0) for s in chunk.dictionary.to_pylist()] or [0],
                dtype=np.int8,
            )
            idx = chunk.indices.to_numpy(zero_copy_only=False)
            if chunk.null_count:
                idx = np.where(np.asarray(chunk.is_null()), 0, idx)
                codes = lut[idx.astype(np.int64)]
                codes[np.asarray(chunk.is_null())] = 0
            else:
                codes = lut[idx.astype(np.int64)]
            parts.append(codes)
        else:
            enc = chunk.dictionary_encode()
            parts.append(_kind_codes(pa.chunked_array([enc])))
    if not parts:
        return np.empty(0, dtype=np.int8)
    return np.concatenate(parts)


def _read_series(root: Path, columns: list[str] | None, problems: list[str]) -> TimeSeries:
    data_dir = root / "data"
    wanted = list(_ALL_COLUMNS) if columns is None else list(dict.fromkeys(columns))
    for must in ("time_s", "cycle"):
        if must not in wanted:
            wanted.append(must)
    if not data_dir.is_dir():
        problems.append("data/ is missing: no time series")
        return TimeSeries()
    if list(data_dir.glob("*.tmp")):
        problems.append(
            "data/ holds a half-written chunk (*.tmp): the run stopped while writing; "
            "records after the last complete chunk are lost"
        )
    files = sorted(data_dir.glob("part-*.parquet"))
    if not files:
        problems.append("data/ has no part-*.parquet chunks: no records yet")
        return TimeSeries()
    tables: list[pa.Table] = []
    # Parquet decoding releases the GIL: read the chunks side by side.
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        futures = [pool.submit(_read_chunk, f, wanted) for f in files]
        for f, fut in zip(files, futures, strict=True):
            try:
                tables.append(fut.result())
            except (OSError, pa.ArrowException) as exc:
                problems.append(f"data/{f.name} is unreadable and was skipped ({exc})")
    tables = [t for t in tables if t.num_rows]
    if not tables:
        problems.append("no readable records in data/")
        return TimeSeries()
    names = set(tables[0].column_names)
    same = [t for t in tables if set(t.column_names) == names]
    if len(same) != len(tables):
        problems.append("some chunks have other columns than the first; they were skipped")
    # fill preallocated arrays chunk by chunk: one copy, no concatenated intermediate
    total = sum(t.num_rows for t in same)
    first = same[0]
    cols: dict[str, npt.NDArray[Any]] = {}
    for name in first.column_names:
        if name == "step_type":
            cols["kind"] = np.empty(total, dtype=np.int8)
        else:
            dtype = _NUMERIC_DTYPES.get(name, first.column(name).type.to_pandas_dtype())
            cols[name] = np.empty(total, dtype=dtype)
    pos = 0
    for t in same:
        end = pos + t.num_rows
        for name in first.column_names:
            col = t.column(name)
            if name == "step_type":
                cols["kind"][pos:end] = _kind_codes(col)
            else:
                # copy chunk by chunk: no concatenated intermediate for multi-group files
                at = pos
                for piece in col.chunks:
                    k = len(piece)
                    cols[name][at : at + k] = piece.to_numpy(zero_copy_only=False)
                    at += k
        pos = end
    missing = [c for c in wanted if c not in first.column_names]
    if missing:
        problems.append(f"the records lack column(s): {', '.join(missing)}")
    # chunks are written in record order; sort only when something went wrong
    order_key = cols.get("record_seq", cols["time_s"])
    if order_key.shape[0] > 1 and bool(np.any(order_key[1:] < order_key[:-1])):
        order = np.argsort(order_key, kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        problems.append("records were out of order across chunks and have been sorted")
    return TimeSeries(cols)


def load_spectrum(path: Path) -> Spectrum:
    """Read one ``eis/cycle_NNNNN[_k].parquet`` file."""
    table = pq.read_table(path)
    meta: dict[str, Any] = {}
    raw = (table.schema.metadata or {}).get(b"labrig")
    if raw:
        try:
            loaded = json.loads(raw)
            if isinstance(loaded, dict):
                meta = loaded
        except ValueError:
            meta = {}
    stem = path.stem
    cycle: int | None = None
    if stem.startswith("cycle_"):
        digits = stem[len("cycle_") :].split("_")[0]
        cycle = int(digits) if digits.isdigit() else None
    f = np.asarray(table.column("frequency_Hz").to_numpy(), dtype=np.float64)
    zr = np.asarray(table.column("z_real_ohm").to_numpy(), dtype=np.float64)
    zi = np.asarray(table.column("z_imag_ohm").to_numpy(), dtype=np.float64)
    ok = np.isfinite(f) & np.isfinite(zr) & np.isfinite(zi) & (f > 0)
    order = np.argsort(-f[ok])  # high to low frequency, as a sweep runs
    return Spectrum(stem, cycle, f[ok][order], zr[ok][order], zi[ok][order], meta)


def _read_spectra(root: Path, problems: list[str]) -> list[Spectrum]:
    eis_dir = root / "eis"
    if not eis_dir.is_dir():
        return []
    out: list[Spectrum] = []
    for path in sorted(eis_dir.glob("*.parquet")):
        try:
            spec = load_spectrum(path)
        except (OSError, KeyError, pa.ArrowException) as exc:
            problems.append(f"eis/{path.name} is unreadable and was skipped ({exc})")
            continue
        if spec.frequency_Hz.size < 5:
            problems.append(f"eis/{path.name} has fewer than 5 valid points and was skipped")
            continue
        out.append(spec)
    out.sort(key=lambda s: (s.cycle if s.cycle is not None else -1, s.name))
    return out


def _read_events(root: Path, problems: list[str]) -> list[dict[str, Any]]:
    path = root / "events.jsonl"
    if not path.exists():
        problems.append("events.jsonl is missing")
        return []
    events: list[dict[str, Any]] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                bad += 1  # a crash can cut the last line short
                continue
            if isinstance(ev, dict):
                events.append(ev)
    if bad:
        problems.append(f"events.jsonl: {bad} line(s) could not be parsed and were skipped")
    return events


def _read_stored_cycles(root: Path, problems: list[str]) -> pd.DataFrame | None:
    pq_path = root / "cycles.parquet"
    csv_path = root / "cycles.csv"
    try:
        if pq_path.exists():
            stored: pd.DataFrame = pq.read_table(pq_path).to_pandas()
            return stored
        if csv_path.exists():
            frame: pd.DataFrame = pd.read_csv(csv_path)
            return frame
    except (OSError, ValueError, pa.ArrowException) as exc:
        problems.append(f"the stored per-cycle table is unreadable ({exc})")
        return None
    problems.append(
        "cycles.parquet is missing (run still going or stopped early): "
        "the per-cycle table is recomputed from the time series only"
    )
    return None


def load_run(path: str | Path, columns: list[str] | None = None) -> RunData:
    """Read the run directory at ``path``.

    ``columns`` limits which time-series columns are read (``time_s`` and ``cycle`` are
    always read); the default reads all. Nothing short of a missing directory raises:
    what could not be read is listed in the result's ``problems``.
    """
    root = Path(path)
    if not root.is_dir():
        raise RunDirError(f"{root}: not a directory (expected a run directory)")
    problems: list[str] = []
    meta: dict[str, Any] = {}
    meta_path = root / "run.json"
    if meta_path.exists():
        try:
            loaded = json.loads(meta_path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                meta = loaded
            else:
                problems.append("run.json is not a JSON object")
        except (OSError, ValueError) as exc:
            problems.append(f"run.json is unreadable ({exc})")
    else:
        problems.append("run.json is missing: no protocol or cell metadata")
    if not (root / "data").exists() and not meta and not (root / "eis").exists():
        raise RunDirError(f"{root}: not a run directory (no run.json, data/ or eis/)")
    series = _read_series(root, columns, problems)
    stored = _read_stored_cycles(root, problems)
    spectra = _read_spectra(root, problems)
    events = _read_events(root, problems)
    run = RunData(root, meta, series, stored, spectra, events, problems)
    state = run.state
    if state in ("running", "paused", "pending"):
        problems.append(f"run state is '{state}': the run is still going or stopped uncleanly")
    elif state in ("failed", "aborted"):
        reason = meta.get("reason")
        problems.append(f"run ended '{state}'" + (f": {reason}" if reason else ""))
    if meta and run.cam_mass_g is None:
        problems.append("run.json has no cell.cam_mass_mg: no specific capacities (mAh/g)")
    return run
