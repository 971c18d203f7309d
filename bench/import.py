"""Import speed: rows/s per format on the real test files, and a large MACCOR export
(default 1000 cycles, ~7 M rows) imported and analysed by labrig beside cellpy reading the
same file in the same process.

    python bench/import.py [--rows 7000000] [--keep]

The large file is made from the real MacTest export in tests/data/ingest (its 8 cycles
repeated to 1000, each record split into evenly spaced ones along its step) and written to
a temporary directory, removed afterwards unless --keep. cellpy is in the ``bench`` extra
(``pip install -e '.[bench]'``); without it only labrig's figures are printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

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


def make_maccor(out: Path, rows: int, cycles: int = 1000) -> int:
    """A MacTest export of ``cycles`` cycles and about ``rows`` records, from the real one."""
    src = DATA / "maccor" / "xTESLADIAG_000038con.078"
    lines = src.read_text(encoding="latin-1").splitlines(keepends=True)
    base = pacsv.read_csv(src, read_options=pacsv.ReadOptions(skip_rows=1),
                          parse_options=pacsv.ParseOptions(delimiter="\t"))  # fmt: skip
    cols = {c: base.column(c).to_numpy(zero_copy_only=False) for c in base.column_names}
    n0 = base.num_rows
    per_rec = max(1, round(rows / (n0 * cycles / 8)))
    reps = -(-cycles // 8)
    # split each record into per_rec evenly spaced ones within its step
    frac = np.arange(per_rec) / per_rec
    t, cap = cols["Test (Sec)"].astype(float), cols["Amp-hr"].astype(float)
    same = np.append(cols["Step"][1:] == cols["Step"][:-1], False)
    nt = np.where(same, np.append(t[1:], t[-1]), t)
    nc = np.where(same, np.append(cap[1:], cap[-1]), cap)
    t_fine = (t[:, None] + (nt - t)[:, None] * frac).ravel()
    c_fine = (cap[:, None] + (nc - cap)[:, None] * frac).ravel()
    span = float(t[-1] - t[0]) + 1.0
    idx = np.repeat(np.arange(n0), per_rec)
    with open(out, "w", encoding="latin-1") as fh:
        fh.writelines(lines[:2])
    written = 0
    with open(out, "ab") as fh:
        for r in range(reps):
            table = {name: cols[name][idx] for name in base.column_names}
            table["Rec#"] = np.arange(written + 1, written + idx.size + 1)
            table["Cyc#"] = cols["Cyc#"][idx] + 8 * r
            table["Test (Sec)"] = np.round(t_fine + r * span, 3)
            table["Amp-hr"] = c_fine
            opts = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
            pacsv.write_csv(pa.table(table), fh, write_options=opts)
            written += idx.size
    return written


def large(tmp: Path, rows: int) -> None:
    big = tmp / "big_export.078"
    t0 = time.perf_counter()
    n = make_maccor(big, rows)
    size = big.stat().st_size
    print(f"\nlarge MACCOR export: {n:,} rows, {size / 1e9:.2f} GB "
          f"(made in {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    t0 = time.perf_counter()
    read_vendor_file(big)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = import_file(big, tmp / "big")
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    a = analyze(run, AnalysisOptions(fit_eis=False))
    t_an = time.perf_counter() - t0
    print(f"labrig read only        {t_read:8.1f} s  {n / t_read:12,.0f} rows/s")
    print(f"labrig import (run dir) {t_import:8.1f} s  {n / t_import:12,.0f} rows/s")
    print(f"labrig analyze          {t_an:8.1f} s  ({len(a.cycles)} cycles)")
    total = t_import + t_an
    print(f"labrig import + analyze {total:8.1f} s  {n / total:12,.0f} rows/s")
    try:
        import cellpy
    except ImportError:
        print("cellpy                  not installed (pip install -e '.[bench]')")
        return
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = cellpy.get(str(big), instrument="maccor_txt", model="one")
        t_cp = time.perf_counter() - t0
        n_cp = len(c.data.raw)
    except Exception as exc:  # cellpy's own errors: report, do not stop the bench
        print(f"cellpy                  failed: {type(exc).__name__}: {exc}")
        return
    print(f"cellpy read + summary   {t_cp:8.1f} s  {n_cp / t_cp:12,.0f} rows/s")
    print(f"ratio cellpy / labrig (read):           {t_cp / t_read:6.1f}x")
    print(f"ratio cellpy / labrig (import+analyze): {t_cp / total:6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=7_000_000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labrig-import-bench-"))
    try:
        per_format(tmp)
        large(tmp, args.rows)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
