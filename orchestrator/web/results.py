"""Heavier results of a run, made on request in a worker thread and cached: impedance
spectra with their equivalent-circuit fits, the HTML report, and downloads (Parquet,
CSV, BDF). The analysis is :mod:`labrig.protocols.analysis`, the same as ``labrig
report`` and ``labrig export``.
"""

from __future__ import annotations

import io
import json
import math
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .rundata import RunNotFound, RunsDir

__all__ = ["DOWNLOADS", "Results"]

#: download name -> (file suffix, media type)
DOWNLOADS = {
    "parquet": (".parquet", "application/vnd.apache.parquet"),
    "csv": (".csv", "text/csv"),
    "cycles-csv": (".cycles.csv", "text/csv"),
    "bdf-csv": (".bdf.csv.zip", "application/zip"),
    "bdf-parquet": (".bdf.parquet", "application/vnd.apache.parquet"),
}
_FIT_CACHE = 256


def _clean(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


class Results:
    """EIS fits, reports and downloads of the runs in ``runs`` (files go to ``work``)."""

    def __init__(self, runs: RunsDir, work: Path) -> None:
        self.runs = runs
        self.work = work
        self._fits: OrderedDict[tuple[str, int, int], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()

    # -- impedance ------------------------------------------------------------------------
    def spectra(self, run_id: str) -> list[dict[str, Any]]:
        eis = self.runs.path(run_id) / "eis"
        files = sorted(eis.glob("*.parquet")) if eis.is_dir() else []
        out = []
        for f in files:
            stem = f.stem
            digits = stem[6:].split("_")[0] if stem.startswith("cycle_") else ""
            out.append({"name": stem, "cycle": int(digits) if digits.isdigit() else None})
        return out

    def spectrum(self, run_id: str, name: str, circuit: str | None = None) -> dict[str, Any]:
        """Data and fit of ``eis/<name>.parquet`` (fit cached by file and circuit)."""
        from labrig.protocols.analysis import DEFAULT_CIRCUIT, fit_spectrum, load_spectrum

        if "/" in name or name.startswith("."):
            raise RunNotFound(f"{name!r} is not a spectrum name")
        path = self.runs.path(run_id) / "eis" / f"{name}.parquet"
        if not path.is_file():
            raise RunNotFound(f"run {run_id} has no spectrum {name!r}")
        st = path.stat()
        key = (str(path) + "|" + (circuit or DEFAULT_CIRCUIT), st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._fits.get(key)
        if hit is not None:
            return hit
        spec = load_spectrum(path)
        fit = fit_spectrum(spec, circuit or DEFAULT_CIRCUIT)
        params = fit.table().to_dict(orient="records")
        out: dict[str, Any] = _clean(
            {
                "name": spec.name,
                "cycle": spec.cycle,
                "frequency_Hz": spec.frequency_Hz.tolist(),
                "z_real_ohm": spec.z_real_ohm.tolist(),
                "z_imag_ohm": spec.z_imag_ohm.tolist(),
                "fit": {
                    "ok": fit.ok,
                    "message": fit.message,
                    "circuit": fit.circuit,
                    "rel_rms_pct": fit.rel_rms_pct,
                    "z_real_ohm": fit.z_fit.real.tolist(),
                    "z_imag_ohm": fit.z_fit.imag.tolist(),
                    "parameters": params,
                },
            }
        )
        with self._lock:
            self._fits[key] = out
            while len(self._fits) > _FIT_CACHE:
                self._fits.popitem(last=False)
        return out

    # -- report ---------------------------------------------------------------------------
    def report(self, run_id: str) -> Path:
        """The HTML report of the run as it is now (rebuilt when the run has changed)."""
        from labrig.protocols.analysis import analyze, write_report

        root = self.runs.path(run_id)
        stamp = max(
            (p.stat().st_mtime_ns for p in (root, root / "data", root / "eis", root / "run.json")
             if p.exists()),
            default=0,
        )  # fmt: skip
        out = self.work / "reports" / f"{run_id}-{stamp}.html"
        with self._report_lock:  # one report at a time: they are heavy
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                for old in out.parent.glob(f"{run_id}-*.html"):
                    old.unlink(missing_ok=True)
                tmp = out.with_suffix(".tmp")
                write_report(analyze(root), tmp, "html")
                tmp.replace(out)
        return out

    # -- downloads ------------------------------------------------------------------------
    def _chunks(self, run_id: str) -> list[Path]:
        files = sorted((self.runs.path(run_id) / "data").glob("part-*.parquet"))
        if not files:
            raise RunNotFound(f"run {run_id} has no stored records yet (data/part-*.parquet)")
        return files

    def parquet_file(self, run_id: str, dest: Path) -> Path:
        """All chunks of the time series as one Parquet file at ``dest``."""
        files = self._chunks(run_id)
        schema = pq.read_schema(files[0])
        with pq.ParquetWriter(dest, schema, compression="zstd") as writer:
            for f in files:
                table = pq.read_table(f)
                writer.write_table(table.cast(schema) if table.schema != schema else table)
        return dest

    def csv_stream(self, run_id: str) -> Iterator[bytes]:
        """The time series as CSV, chunk by chunk (constant memory per chunk)."""
        files = self._chunks(run_id)
        for n, f in enumerate(files):
            table = pq.read_table(f)
            if "step_type" in table.column_names:
                i = table.column_names.index("step_type")
                table = table.set_column(i, "step_type", table.column(i).cast(pa.string()))
            buf = io.BytesIO()
            pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=n == 0))
            yield buf.getvalue()

    def cycles_csv(self, run_id: str) -> bytes:
        root = self.runs.path(run_id)
        if (root / "cycles.csv").is_file():
            return (root / "cycles.csv").read_bytes()
        rows = self.runs.cycles(run_id)
        if not rows:
            raise RunNotFound(f"run {run_id} has no complete cycle yet")
        table = pa.Table.from_pylist([_clean(r) for r in rows])
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        return buf.getvalue()

    def bdf_file(self, run_id: str, fmt: str, dest: Path) -> Path:
        """The BDF export (``labrig export``); CSV comes zipped with its conventions file."""
        from labrig.protocols.analysis import export_bdf

        root = self.runs.path(run_id)
        self._chunks(run_id)
        if fmt == "parquet":
            return export_bdf(root, dest, "parquet")
        inner = dest.with_suffix("")  # <run>.bdf.csv
        export_bdf(root, inner, "csv")
        sidecar = inner.with_name(inner.name + ".metadata.json")
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(inner, f"{run_id}.bdf.csv")
            if sidecar.exists():
                z.write(sidecar, f"{run_id}.bdf.csv.metadata.json")
        inner.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        return dest


def dumps(obj: Any) -> str:
    """JSON for the browser: NaN and infinities become null (walked only when present)."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_clean(obj), separators=(",", ":"), allow_nan=False, default=str)
