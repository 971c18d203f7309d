"""Benchmark of the run analysis on a 1000-cycle run logged every second (~7.7 M rows).

    python bench/analysis.py [--regenerate]

The run is synthetic but realistic (1C cycling with rests, noise, four EIS checkpoints),
written through the real RunStore so the Parquet schema is the run store's; it is cached
under bench/out/. Prints: load + per-cycle table (target < 0.5 s), the whole analysis incl.
impedance fits (target < 5 s), and a plain pandas read + groupby for comparison.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"
RUN = OUT / "bench-1000c-1s"


def generate() -> Path:
    from tests.unit.analysis.synth import write_cycling_run

    if RUN.exists():
        shutil.rmtree(RUN)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    w = write_cycling_run(OUT, [1.0] * 1000, every_s=1.0, rest_s=535.0, run_id=RUN.name,
                          eis_cycles=(1, 333, 666, 1000))  # fmt: skip
    print(f"generated {w.root} in {time.perf_counter() - t0:.1f} s")
    return w.root


def best_of(n: int, fn: object) -> tuple[float, object]:
    best = float("inf")
    result: object = None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    if "--regenerate" in sys.argv or not (RUN / "cycles.parquet").exists():
        generate()
    import pandas as pd

    from labrig.protocols.analysis import (
        AnalysisOptions,
        analyze,
        cycle_table,
        load_run,
        segment_series,
    )

    cols = ["time_s", "cycle", "step", "step_type", "current_A", "voltage_V",
            "charge_capacity_Ah", "discharge_capacity_Ah"]  # fmt: skip

    def per_cycle() -> object:
        run = load_run(RUN, columns=cols)
        seg = segment_series(run.series)
        return cycle_table(run.series, cam_mass_g=run.cam_mass_g, one_c_A=run.one_c_A,
                           segments=seg, stored=run.stored_cycles)  # fmt: skip

    t_load, run = best_of(3, lambda: load_run(RUN, columns=cols))
    rows = len(run.series)  # type: ignore[attr-defined]
    t_table, table = best_of(3, per_cycle)
    print(f"rows: {rows:,}  cycles: {len(table):,}")  # type: ignore[arg-type]
    print(f"load (pyarrow, {len(cols)} columns):        {t_load:6.3f} s")
    print(f"load + per-cycle table:                {t_table:6.3f} s   (target < 0.5 s)")

    t_nofit, _ = best_of(1, lambda: analyze(RUN, AnalysisOptions(fit_eis=False)))
    print(f"everything without EIS fits:           {t_nofit:6.3f} s")
    t_all, a = best_of(1, lambda: analyze(RUN))
    n_fit = len(a.eis)  # type: ignore[attr-defined]
    print(f"everything incl. {n_fit} EIS fits:           {t_all:6.3f} s   (target < 5 s)")

    def pandas_groupby() -> object:
        df = pd.read_parquet(RUN / "data", columns=cols)
        df["dt"] = df["time_s"].diff().fillna(0.0)
        g = df.groupby("cycle", sort=True)
        return g.agg(
            charge_Ah=("charge_capacity_Ah", "max"),
            discharge_Ah=("discharge_capacity_Ah", "max"),
            start=("time_s", "min"),
            end=("time_s", "max"),
            v_mean=("voltage_V", "mean"),
        )

    t_pd, _ = best_of(2, pandas_groupby)
    print(f"plain pandas read + groupby (5 aggs):  {t_pd:6.3f} s   (for comparison)")


if __name__ == "__main__":
    main()
