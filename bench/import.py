"""Import speed: rows/s per format on the real test files, and a large MACCOR export
(default 1000 cycles, ~7 M rows) read, imported and analysed by labrig beside cellpy
reading the same file, in one run and one process.

    python bench/import.py [--rows 7000000] [--cycles 1000] [--keep] [--no-cellpy]

The large file is a MacTest text export in the layout cellpy's MACCOR model "one" reads
(cellpy's own MACCOR test file is one; see bench/maccor_export.py), written to a temporary
directory and removed afterwards unless --keep. Printed for it: its size and rows; two
references for what reading it costs at least (the bytes read from the page cache, and
Arrow parsing every column of it); labrig's read, import (run directory written) and
analysis, in seconds, rows/s and as a multiple of the Arrow parse; cellpy's read + summary
and the ratio; and the largest deviation of labrig's per-cycle capacities from cellpy's
summary and from what the file holds. cellpy is in the ``bench`` extra
(``pip install -e '.[bench]'``); without it only labrig's figures are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from maccor_export import Export, write_maccor_export

from labrig.orchestrator.importer import import_file
from labrig.protocols.analysis import AnalysisOptions, analyze
from labrig.protocols.ingest import read_vendor_file

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "ingest"
SMALL = [
    DATA / "maccor" / "xTESLADIAG_000038con.078",
    DATA / "biologic" / "250116_kigr_gen6_01_02_GCPL_CD8.mpr",
    DATA / "neware" / "nw4-120-6-1-36.ndax",
    DATA / "arbin" / "20160805_test001_45_cc_01.res",
    DATA / "bdf" / "SINTEF__LiGrR2032__2024-04-30__25degC__Landt.bdf.csv",
]


def per_format(tmp: Path, repeats: int = 3) -> None:
    print("format             rows    import median   rows/s")
    for src in SMALL:
        times = []
        for k in range(repeats):
            t0 = time.perf_counter()
            import_file(src, tmp / f"small{k}")
            times.append(time.perf_counter() - t0)
        n = len(read_vendor_file(src))
        med = statistics.median(times)
        print(f"{src.suffix:<12} {n:>10,} {med:>12.3f} s {n / med:>10,.0f}")


def _timed(fn: object) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()  # type: ignore[operator]
    return time.perf_counter() - t0, out


def _line(what: str, seconds: float, rows: int, ref: float | None = None) -> None:
    times = f"  {seconds / ref:5.1f}x the Arrow parse" if ref else ""
    print(f"{what:<34}{seconds:8.1f} s {rows / seconds:12,.0f} rows/s{times}")


def references(big: Path, rows: int) -> float:
    """What reading the file costs at least; returns the Arrow parse time."""

    def raw() -> int:
        size = 0
        with open(big, "rb") as fh:
            while block := fh.read(1 << 24):
                size += len(block)
        return size

    raw()  # the page cache holds the file from here on, for every reader alike
    t_raw, size = _timed(raw)
    print(f"{'bytes read (page cache)':<34}{t_raw:8.1f} s {size / t_raw / 1e9:9.2f} GB/s")
    opts = pacsv.ReadOptions(skip_rows=3, block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False)
    t_arrow, _ = _timed(lambda: pacsv.read_csv(big, read_options=opts, parse_options=parse))
    _line("Arrow CSV parse, all 14 columns", t_arrow, rows)
    return t_arrow


def labrig(big: Path, tmp: Path, rows: int, ref: float) -> tuple[float, float, Path]:
    t_read, vd = _timed(lambda: read_vendor_file(big))
    del vd
    gc.collect()
    t_import, run = _timed(lambda: import_file(big, tmp / "big"))
    assert isinstance(run, Path)
    t_an, a = _timed(lambda: analyze(run, AnalysisOptions(fit_eis=False)))
    _line("labrig read", t_read, rows, ref)
    _line("labrig import (run directory)", t_import, rows, ref)
    _line(f"labrig analyse ({len(a.cycles)} cycles)", t_an, rows)  # type: ignore[attr-defined]
    _line("labrig import + analyse", t_import + t_an, rows, ref)
    return t_read, t_import + t_an, run


def _deviation(ours: np.ndarray, ref: np.ndarray) -> float:
    n = min(ours.size, ref.size)
    if n == 0 or ours.size != ref.size:
        print(f"  cycle counts differ: labrig {ours.size}, reference {ref.size}")
    return float(np.max(np.abs(ours[:n] - ref[:n]) / np.abs(ref[:n]))) if n else float("nan")


def agreement(run: Path, export: Export, summary: object | None) -> None:
    cyc = pq.read_table(run / "cycles.parquet").to_pandas()
    ours = {"charge": cyc["charge_capacity_mAh"].to_numpy() * 1e-3,
            "discharge": cyc["discharge_capacity_mAh"].to_numpy() * 1e-3}  # fmt: skip
    truth = {"charge": export.charge_Ah, "discharge": export.discharge_Ah}
    for side in ("charge", "discharge"):
        dev = _deviation(ours[side], truth[side])
        print(f"labrig {side:<9} capacity vs the file: max deviation {dev * 100:.5f} % "
              f"over {ours[side].size} cycles")  # fmt: skip
        if summary is not None:
            cp = summary[f"{side}_capacity"].to_numpy(dtype=float)  # type: ignore[index]
            dev = _deviation(ours[side], cp)
            print(f"labrig {side:<9} capacity vs cellpy:   max deviation {dev * 100:.5f} % "
                  f"over {cp.size} cycles")  # fmt: skip


def cellpy_read(big: Path) -> tuple[float, int, object] | None:
    """cellpy's read + summary of ``big`` (its logs go beside it, not to the current folder)."""
    try:
        import cellpy
    except ImportError:
        print("cellpy                            not installed (pip install -e '.[bench]')")
        return None
    from cellpy_compat import ensure_working_splitter

    note = ensure_working_splitter()
    if note:
        print(f"note: {note}")
    try:  # cellpy prints its progress and warns once a row (pandas 4 deprecations): muted
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            opts = {"instrument": "maccor_txt", "model": "one", "logging_mode": "CRITICAL",
                    "custom_log_dir": str(big.parent)}  # fmt: skip
            t_cp, c = _timed(lambda: cellpy.get(str(big), **opts))
    except Exception as exc:  # cellpy's own errors: report, do not stop the bench
        print(f"cellpy                            failed: {type(exc).__name__}: {exc}")
        return None
    return t_cp, len(c.data.raw), c.data.summary  # type: ignore[attr-defined]


def large(tmp: Path, rows: int, cycles: int, with_cellpy: bool) -> None:
    big = tmp / "M50_ageing_25degC_C2-1C_07.txt"
    t_make, export = _timed(lambda: write_maccor_export(big, rows, cycles))
    assert isinstance(export, Export)
    n = export.rows
    print(f"\nMACCOR text export (cellpy model 'one' layout): {n:,} rows, {cycles} cycles, "
          f"{big.stat().st_size / 1e9:.2f} GB (written in {t_make:.0f} s)")  # fmt: skip
    ref = references(big, n)
    t_read, t_total, run = labrig(big, tmp, n, ref)
    got = cellpy_read(big) if with_cellpy else None
    if got is not None:
        t_cp, n_cp, _ = got
        _line(f"cellpy read + summary ({n_cp:,} rows)", t_cp, n)
        print(f"ratio cellpy / labrig read:              {t_cp / t_read:7.1f}x")
        print(f"ratio cellpy / labrig import + analyse:  {t_cp / t_total:7.1f}x")
    agreement(run, export, got[2] if got else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=7_000_000)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-cellpy", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labrig-import-bench-"))
    try:
        per_format(tmp)
        large(tmp, args.rows, args.cycles, not args.no_cellpy)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
