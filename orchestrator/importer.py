"""Vendor files into run directories (``labrig import``), and the cache that lets
``labrig analyze|report|compare`` take a vendor file directly.

A run directory is written under a temporary name next to its final place and renamed
when complete, so an import that fails (a damaged file, a full disk, Ctrl-C) leaves
nothing behind. ``run.json`` records where the data came from: the source file, its
SHA-256, the reader and its version, the vendor's cycle column, what the file said about
itself, and the cell metadata given or found.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labrig.protocols.analysis.cycling import cycle_table
from labrig.protocols.analysis.loader import TimeSeries
from labrig.protocols.ingest import (
    IngestError,
    NormalizedRun,
    VendorData,
    attach_eis,
    detect_format,
    eis_siblings,
    is_maccor_eis,
    normalize,
    read_vendor_file,
    spectrum_cycle,
)

from .events import RunState
from .store import RunStore

__all__ = [
    "IMPORT_VERSION",
    "IngestError",
    "cache_dir",
    "cached_import",
    "eis_files_for",
    "file_sha256",
    "import_file",
    "resolve_run",
]

#: bump when the same file would import differently (the cache is keyed by it)
IMPORT_VERSION = 1
_CHUNK = 1_000_000
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CELL_KEYS = ("cell_id", "sample_id", "cam_mass_mg", "c_rate_basis_mA_per_g",
              "nominal_capacity_mAh")  # fmt: skip


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where vendor files opened directly are imported: ``$LABRIG_CACHE_DIR`` or
    ``~/.cache/labrig/imports``."""
    env = os.environ.get("LABRIG_CACHE_DIR")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "labrig" / "imports"


def _cell(vd: VendorData, given: Mapping[str, Any]) -> dict[str, Any]:
    """Cell metadata: what the file held (BDF sidecar, Arbin/BioLogic mass), overridden by
    what was given on the command line."""
    cell: dict[str, Any] = {}
    found = vd.meta.get("cell")
    if isinstance(found, dict):
        cell.update({k: v for k, v in found.items() if v is not None})
    for k in _CELL_KEYS:
        if vd.meta.get(k) is not None:
            cell[k] = vd.meta[k]
    cell.update({k: v for k, v in given.items() if v is not None})
    return cell


def _cycle_rows(run: NormalizedRun, cell: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not len(run):
        return []
    cols = {k: v for k, v in run.columns.items() if k != "record_seq"}
    cols["kind"] = run.kind
    mass = cell.get("cam_mass_mg")
    mass_g = float(mass) * 1e-3 if isinstance(mass, int | float) and mass > 0 else None
    table = cycle_table(TimeSeries(cols), cam_mass_g=mass_g)
    src = {r["cycle"]: r for r in run.cycle_map}
    rows: list[dict[str, Any]] = []
    for rec in table.to_dict(orient="records"):
        row: dict[str, Any] = {str(k): (None if isinstance(v, float) and not np.isfinite(v)
                                        else v) for k, v in rec.items()}  # fmt: skip
        m = src.get(int(rec["cycle"]), {})
        row["source_cycle"] = m.get("source_cycle")
        row["source_cycle_last"] = m.get("source_cycle_last")
        rows.append(row)
    return rows


def _meta(vd: VendorData, fmt: str, sha: str, cell: dict[str, Any], run_id: str,
          eis: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    file_meta = {k: v for k, v in vd.meta.items() if k != "cell" and k not in _CELL_KEYS}
    return {
        "protocol": {"name": f"imported {vd.vendor} data", "source": str(vd.path.name)},
        "cell": cell,
        "label": cell.get("cell_id") or vd.path.stem,
        "simulated": False,
        "imported": {
            "source_file": str(vd.path.resolve()),
            "sha256": sha,
            "size_bytes": vd.path.stat().st_size,
            "format": fmt,
            "vendor": vd.vendor,
            "reader": vd.reader,
            "reader_version": vd.reader_version,
            "import_version": IMPORT_VERSION,
            "vendor_cycle_column": vd.cycle_column,
            "records": len(vd),
            "spectra": len(vd.spectra),
            "eis_files": eis,
            "file_says": file_meta,
            "conventions": "current positive while charging; a cycle is one charge then "
            "one discharge, counted from 1; capacities count up from 0 within each cycle; "
            "cycles.parquet source_cycle/source_cycle_last give the vendor's cycle",
        },
        "run_id": run_id,
    }


def _write(root_parent: Path, run_id: str, vd: VendorData, fmt: str, sha: str,
           given: Mapping[str, Any], eis: list[dict[str, Any]]) -> Path:  # fmt: skip
    run = normalize(vd)
    cell = _cell(vd, given)
    store = RunStore.create(
        root_parent, run_id, durable=False, staging=False, chunk_rows=_CHUNK,
        protocol_yaml=f"# imported from {vd.path.name} ({vd.vendor}, read by {vd.reader});"
        " no labrig protocol ran\n",
        meta=_meta(vd, fmt, sha, cell, run_id, eis),
    )  # fmt: skip
    try:
        kinds = run.step_type_values()
        for start in range(0, len(run), _CHUNK):
            sl = slice(start, start + _CHUNK)
            part = {k: v[sl] for k, v in run.columns.items()}
            part["step_type"] = kinds[sl]
            store.append_records(part)
        for row in _cycle_rows(run, cell):
            store.add_cycle(row)
        for spec in vd.spectra:
            cyc = spectrum_cycle(run, spec.source_cycle, spec.time_s)
            meta = {"source_cycle": spec.source_cycle, "source_time_s": spec.time_s,
                    "placed_by": "time" if spec.time_s is not None else (
                        "vendor cycle" if spec.source_cycle is not None else "none"),
                    **spec.meta}  # fmt: skip
            store.write_eis(cyc, spec.frequency_Hz, spec.z_real_ohm, spec.z_imag_ohm, meta)
        store.finish(RunState.finished)
    finally:
        store.close()
    return root_parent / run_id


def _run_id(path: Path, sha: str) -> str:
    stem = _SAFE.sub("-", path.name).strip("-")[:60] or "import"
    return f"{stem}-{sha[:8]}"


def eis_files_for(path: Path, fmt: str, given: Sequence[Path] = (), *,
                  siblings: bool = True) -> list[Path]:  # fmt: skip
    """The EIS exports that go with a data file: those given, and (``siblings``) the MACCOR
    EIS exports of the same test next to a MACCOR data export."""
    found = [Path(p) for p in given]
    if fmt == "maccor" and siblings and not is_maccor_eis(path):
        found += [p for p in eis_siblings(path) if p not in found]
    if found and (fmt != "maccor" or is_maccor_eis(path)):
        raise IngestError(found[0], f"an EIS export goes with a MACCOR data export, not {path}")
    return found


def _read_eis(vd: VendorData, files: list[Path], given: Sequence[Path]) -> list[dict[str, Any]]:
    """Attach the sweeps of ``files`` to ``vd``; what run.json records of each file."""
    read: list[VendorData] = []
    for p in files:
        found = "" if p in given else "; found beside it: --no-siblings leaves it out"
        whose = f"(as an EIS export of {vd.path}{found})"
        if not is_maccor_eis(p):
            raise IngestError(p, "not a MACCOR EIS export (its first line should say "
                              f"'MACCOR ... AC Impedance') {whose}")  # fmt: skip
        try:
            read.append(read_vendor_file(p, "maccor"))
        except IngestError as exc:
            raise IngestError(p, f"{exc.problem} {whose}") from None
    attach_eis(vd, read)
    return [{"source_file": str(p.resolve()), "sha256": file_sha256(p),
             "size_bytes": p.stat().st_size, "reader": e.reader, "spectra": len(e.spectra)}
            for p, e in zip(files, read, strict=True)]  # fmt: skip


def import_file(
    path: Path,
    out_dir: Path,
    cell: Mapping[str, Any] | None = None,
    *,
    fmt: str | None = None,
    run_id: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    eis: Sequence[Path] = (),
    siblings: bool = True,
) -> Path:
    """Import ``path`` as ``out_dir/<run_id>``; returns the run directory.

    ``eis``: MACCOR EIS exports to put in the same run (``eis/``); with ``siblings`` the
    EIS exports of the same test found next to a MACCOR data export are added.
    Raises :class:`IngestError` (naming the file) for unknown or damaged files and when
    the run directory exists already; nothing is left behind on any failure.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    eis_files = eis_files_for(path, fmt, eis, siblings=siblings)
    note = on_stage or (lambda _s: None)
    note("checksum")
    sha = file_sha256(path)
    run_id = run_id or _run_id(path, sha)
    final = out_dir / run_id
    if final.exists():
        raise IngestError(path, f"already imported as {final} (remove it to import again)")
    note("read")
    vd = read_vendor_file(path, fmt)
    eis_meta = _read_eis(vd, eis_files, [Path(p) for p in eis]) if eis_files else []
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_parent = out_dir / f".importing-{run_id}-{secrets.token_hex(4)}"
    tmp_parent.mkdir()
    try:
        note("write")
        written = _write(tmp_parent, run_id, vd, fmt, sha, dict(cell or {}), eis_meta)
        os.replace(written, final)
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)
    return final


def cached_import(path: Path, cache: Path | None = None) -> Path:
    """The run directory of a vendor file opened directly, imported once per content: the
    cache is keyed by the file's SHA-256, its EIS siblings' (MACCOR) and
    :data:`IMPORT_VERSION`."""
    path = Path(path)
    fmt = detect_format(path)
    sha = file_sha256(path)
    key = sha
    eis = eis_files_for(path, fmt)
    if eis:  # the same data with other EIS exports beside it is another import
        key = hashlib.sha256("".join([sha, *map(file_sha256, eis)]).encode()).hexdigest()
    where = (cache or cache_dir()) / f"v{IMPORT_VERSION}-{key[:32]}"
    run_id = _run_id(path, sha)
    if (where / run_id / "run.json").is_file():
        return where / run_id
    existing = [p for p in where.glob("*/run.json")] if where.is_dir() else []
    if existing:
        return existing[0].parent  # the same bytes under another name
    return import_file(path, where, fmt=fmt, run_id=run_id, eis=eis, siblings=False)


def resolve_run(path: Path) -> Path:
    """A run directory as it is; a vendor file through :func:`cached_import`."""
    path = Path(path)
    if path.is_dir() or not path.exists():
        return path
    return cached_import(path)
