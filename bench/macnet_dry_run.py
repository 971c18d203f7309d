"""Dry run: 1000 1C cycles plus a 0.1C check-up every 50, MaccorChannel -> MacNet simulator.

Each cycle is one block (CC charge to 3.68 V, CC discharge to 2.28 V, a record every
10 s) sent as a MACCOR procedure over loopback TCP, on the virtual clock. Prints wall
time, rows collected, simulated hours and MacNet round trips.

    python bench/macnet_dry_run.py [--cycles 1000] [--poll 600]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from labrig.drivers.capabilities import (
    ChannelLimits,
    ChannelState,
    ChannelStep,
    EndCondition,
    RecordRule,
)
from labrig.drivers.maccor import MaccorCycler
from labrig.orchestrator.clock import run_virtual
from labrig.simulators.maccor import serve_maccor

ONE_C_A = 200e-3 * 8.4e-3  # the default simulated cell: 8.4 mg CAM at 200 mA/g


def block(first_id: int, c_rate: float) -> list[ChannelStep]:
    rec = RecordRule(every_s=10.0)
    i = ONE_C_A * c_rate
    return [
        ChannelStep(first_id, "cc", "charge", current_A=i,
                    ends=(EndCondition("voltage", ">=", 3.68),), record=rec),
        ChannelStep(first_id + 1, "cc", "discharge", current_A=-i,
                    ends=(EndCondition("voltage", "<=", 2.28),), record=rec),
    ]  # fmt: skip


async def dry_run(cycles: int, poll_s: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    t_sim0 = loop.time()
    rows = 0
    blocks = 0
    async with (
        serve_maccor(1) as srv,
        MaccorCycler.from_url(srv.url, channels=1) as cyc,
    ):
        ch = cyc.channel(0)
        await ch.set_limits(ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01))
        seq = 0
        step_id = 0
        for n in range(1, cycles + 1):
            plan = [0.1, 1.0] if n % 50 == 0 else [1.0]
            for c_rate in plan:
                blocks += 1
                await ch.start_block(blocks, block(step_id, c_rate))
                step_id += 2
                res = await ch.wait_block(poll_s=poll_s)
                if res.state != ChannelState.done:
                    raise SystemExit(f"block {blocks} ended {res.state}: {res.fault}")
                batch = await ch.read_records(seq)
                rows += len(batch)
                if len(batch):
                    seq = int(batch.seq[-1])
        trips = cyc.round_trips
    return {
        "rows": rows,
        "blocks": blocks,
        "sim_hours": (loop.time() - t_sim0) / 3600,
        "round_trips": trips,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--poll", type=float, default=1800.0, help="wait_block poll interval [s]")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = run_virtual(dry_run(args.cycles, args.poll))
    wall = time.perf_counter() - t0
    print(f"cycles          {args.cycles} (+ check-ups), blocks {out['blocks']:.0f}")
    print(f"wall time       {wall:.2f} s")
    print(f"rows            {out['rows']:.0f}")
    print(f"simulated hours {out['sim_hours']:.1f}")
    print(f"round trips     {out['round_trips']:.0f}")


if __name__ == "__main__":
    main()
