"""A simulated 8 h anneal (postanneal_600C_8h) through ``execute_run`` on the virtual clock.

The whole orchestrator path: library protocol -> furnace executor -> real Eurotherm and
Alicat drivers over loopback TCP -> in-process simulators, recording every ``--poll``
simulated seconds and supervising the temperature every ``--safety`` seconds.
Target: the whole run (≈13 simulated hours) in < 1 s of wall time.

    python bench/anneal.py [--poll 60] [--safety 60] [--protocol postanneal_600C_8h]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from labrig.orchestrator.clock import new_virtual_loop
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.thermal import ThermalOptions, ThermalOutcome
from labrig.protocols.loader import dump_protocol_yaml, load_protocol


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--protocol", default="postanneal_600C_8h")
    ap.add_argument("--poll", type=float, default=60.0, help="record period, simulated s")
    ap.add_argument("--safety", type=float, default=60.0, help="PV check period, simulated s")
    args = ap.parse_args()
    proto = load_protocol(args.protocol)
    with tempfile.TemporaryDirectory() as tmp:
        req = RunRequest(
            protocol=proto,
            protocol_yaml=dump_protocol_yaml(proto),
            out_dir=Path(tmp),
            sim=True,
            options=ThermalOptions(poll_s=args.poll, safety_period_s=args.safety),
        )
        t0 = time.perf_counter()
        with asyncio.Runner(loop_factory=new_virtual_loop) as runner:
            outcome, _ = runner.run(execute_run(req))
        wall = time.perf_counter() - t0
    assert isinstance(outcome, ThermalOutcome)
    s = outcome.summary
    print(f"{args.protocol}: record every {args.poll:g} s, PV check every {args.safety:g} s")
    print(f"  state                {outcome.state.value}")
    print(f"  simulated_h          {outcome.run_time_s / 3600:.2f}")
    print(f"  rows                 {outcome.rows:,}")
    for d in s.get("dwells", []):
        print(f"  dwell within ±{d['tolerance_K']:g} K  {100 * d['within_fraction']:.1f} %")
    print(f"  overshoot_K          {s.get('overshoot_K') or 0.0:.2f}")
    for line, g in s.get("gas", {}).items():
        print(f"  gas {line:<4}             {g['used_L']:.1f} L")
    print(f"  wall time            {wall:.3f} s  (target < 1 s)")
    print(f"  speed-up             {outcome.run_time_s / wall:,.0f}x real time")


if __name__ == "__main__":
    main()
