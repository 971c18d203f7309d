"""Speed of the simulated cell and channel engine on a long cycling protocol.

Runs, on :class:`simulators.engine.ChannelEngine` directly (no orchestrator):
two 0.1C formation cycles, then 1000 cycles at 1C with a 0.1C check-up cycle every 50
cycles, 10 s records, one block per cycle as an orchestrator would send them. Prints the
wall time, records per second, and the capacity retention it produced.

    python bench/cell_speed.py [--preset NAME] [--cycles N] [--temperature C]
"""

from __future__ import annotations

import argparse
import time

from labrig.simulators.engine import ChannelEngine, SimEnd, SimRecord, SimStep


def cycle_block(i_a: float, v_min: float, v_max: float, sid: int) -> list[SimStep]:
    rec = SimRecord(every_s=10.0)
    return [
        SimStep(sid, "cc", "charge", i_a, ends=(SimEnd("voltage", ">=", v_max),), record=rec),
        SimStep(
            sid + 1, "cc", "discharge", -i_a, ends=(SimEnd("voltage", "<=", v_min),), record=rec
        ),
    ]


def run(preset: str, cycles: int, temperature_C: float, v_min: float, v_max: float,
        specific_mA_g: float) -> dict[str, float]:  # fmt: skip
    eng = ChannelEngine(preset, seed=1, temperature_C=temperature_C)
    eng.set_limits(v_min - 0.3, v_max + 0.2, 0.02)
    p = eng.params
    i_1c = p.c_rate_A(1.0, specific_mA_g)
    now = 0.0
    rows = 0
    seq = 0
    block = 0
    sid = 1
    caps: list[float] = []
    t0 = time.perf_counter()

    def do(rate: float) -> float:
        nonlocal now, rows, seq, block, sid
        block += 1
        eng.start_block(block, cycle_block(rate * i_1c, v_min, v_max, sid), now)
        sid += 2
        end = eng.end_time()
        assert end is not None
        now = end
        recs = eng.records_after(seq, now)
        rows += len(recs["seq"])
        if len(recs["seq"]):
            seq = int(recs["seq"][-1])
        res = eng.step_results(now)
        return -res[-1].charge_Ah / p.cam_mass_g * 1e3  # mAh/g discharged

    for _ in range(2):
        do(0.1)
    for n in range(1, cycles + 1):
        caps.append(do(1.0))
        if n % 50 == 0:
            do(0.1)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "rows": rows,
        "rows_per_s": rows / wall,
        "test_days": now / 86400.0,
        "first_1C_mAh_g": caps[0],
        "last_1C_mAh_g": caps[-1],
        "retention": caps[-1] / caps[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="ncm85_ininli")
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--temperature", type=float, default=25.0)
    ap.add_argument("--window", type=float, nargs=2, default=(2.0, 3.7))
    ap.add_argument("--specific", type=float, default=200.0, help="1C in mA/g")
    a = ap.parse_args()
    r = run(a.preset, a.cycles, a.temperature, a.window[0], a.window[1], a.specific)
    print(f"preset {a.preset}, {a.cycles} 1C cycles + 0.1C check-up every 50, 10 s records")
    print(f"wall time      {r['wall_s']:.2f} s")
    print(f"records        {r['rows']:.0f} ({r['rows_per_s']:.0f} rows/s)")
    print(f"simulated      {r['test_days']:.1f} days of test time")
    print(
        f"1C discharge   {r['first_1C_mAh_g']:.1f} -> {r['last_1C_mAh_g']:.1f} mAh/g "
        f"(retention {100 * r['retention']:.1f} %)"
    )


if __name__ == "__main__":
    main()
