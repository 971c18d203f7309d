"""Crash recovery figures (issue: surviving faults).

1. Kill the orchestrator at 20 seeded random moments of the simulated 1000-cycle run
   (endurance_1c_checkups) and resume it each time; compare with an uninterrupted run:
   resumed at the right step (every kill), committed rows lost, rows duplicated.
2. Restart time of a run killed near cycle 1 vs near cycle 1000 (in-process resume:
   journal, run directory, events file, re-attach), and the ratio (target <= 2x).

    python bench/crash_recovery.py [--protocol endurance_1c_checkups] [--kills 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from labrig.orchestrator.clock import new_virtual_loop
from labrig.orchestrator.drills import DrillResult, run_with_kills
from labrig.protocols.loader import load_protocol


def drill(protocol: str, kills: list[float]) -> tuple[DrillResult, float]:
    proto = load_protocol(protocol)
    out = Path(tempfile.mkdtemp(prefix="labrig-drill-"))
    t0 = time.perf_counter()
    with asyncio.Runner(loop_factory=new_virtual_loop) as r:
        res = r.run(run_with_kills(proto, out, kills))
    return res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", default="endurance_1c_checkups")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    ref, wall_ref = drill(args.protocol, [])
    ref_tab = pq.read_table(ref.root / "data", columns=["record_seq", "voltage_V"]).to_pandas()
    end = float(ref.outcome.run_time_s)
    rng = random.Random(args.seed)
    kills = sorted(rng.uniform(0, end) for _ in range(args.kills))
    res, wall = drill(args.protocol, kills)
    tab = pq.read_table(res.root / "data", columns=["record_seq", "voltage_V"]).to_pandas()
    seq, ref_seq = tab.record_seq.to_numpy(), ref_tab.record_seq.to_numpy()
    lost = len(np.setdiff1d(ref_seq, seq))
    dup = len(seq) - len(np.unique(seq))
    same = (
        len(seq) == len(ref_seq)
        and np.allclose(np.sort(seq), np.sort(ref_seq))
        and np.allclose(
            tab.sort_values("record_seq").voltage_V.to_numpy(),
            ref_tab.sort_values("record_seq").voltage_V.to_numpy(),
        )
    )
    print(f"protocol           {args.protocol} ({ref.outcome.cycles} cycles, "
          f"{end / 3600:,.0f} h simulated)")  # fmt: skip
    print(f"kills              {res.kills} at seeded moments (seed {args.seed})")
    print(f"resumed and ended  {res.outcome.state.value} ({res.kills}/{args.kills} resumed)")
    print(f"rows               {len(seq):,} (uninterrupted: {len(ref_seq):,})")
    print(f"rows lost          {lost}")
    print(f"rows duplicated    {dup}")
    print(f"identical data     {same}")
    print(f"cycles             {res.outcome.cycles} (uninterrupted: {ref.outcome.cycles})")
    print(f"wall time          {wall:.1f} s with kills, {wall_ref:.1f} s without")

    # restart time: early vs late in the run
    early, _ = drill(args.protocol, [0.002 * end, 0.003 * end, 0.004 * end])
    late, _ = drill(args.protocol, [0.996 * end, 0.997 * end, 0.998 * end])
    e = statistics.median(early.restart_s)
    la = statistics.median(late.restart_s)
    print(f"restart near cycle 1     {e * 1e3:7.1f} ms (median of 3)")
    print(
        f"restart near the end     {la * 1e3:7.1f} ms (median of 3, cycle ~{late.outcome.cycles})"
    )
    print(f"ratio late/early         {la / e:7.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
