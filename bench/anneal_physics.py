"""An 8 h furnace anneal through driver + simulator on the virtual clock; prints figures.

Protocol 2 of the lab (post-anneal of a dry coating): synthetic air on (N2 118.5 + O2
31.5 sccm), 5 K/min to 600 °C, 8 h at 600 °C, natural cooling to 100 °C. The host logs
temperature, setpoint and output every ``--poll`` simulated seconds over a real link
(loopback TCP or a pseudo-terminal). Target: the whole anneal in < 1 s of wall time.

    python bench/anneal_physics.py [--transport tcp|pty] [--poll 60]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Literal

from labrig.drivers.alicat import AlicatBus, AlicatFlow
from labrig.drivers.capabilities import FurnaceSegment
from labrig.drivers.eurotherm import EurothermFurnace
from labrig.drivers.transport import transport_from_url
from labrig.orchestrator.clock import new_virtual_loop
from labrig.simulators.furnace import start_eurotherm_sim
from labrig.simulators.gas import start_alicat_sim


async def anneal(transport: str, poll_s: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    kind: Literal["tcp", "pty"] = "pty" if transport == "pty" else "tcp"
    async with (
        await start_eurotherm_sim(transport=kind, limit_C=650.0) as fsim,
        await start_alicat_sim(transport=kind) as gsim,
        EurothermFurnace.from_url(fsim.address, 1) as furnace,
        transport_from_url(gsim.address) as glink,
    ):
        bus = AlicatBus(glink)
        n2, o2 = AlicatFlow(bus, "A"), AlicatFlow(bus, "B")
        await n2.set_flow(118.5)
        await o2.set_flow(31.5)
        await furnace.load_program(
            [
                FurnaceSegment("ramp", 600.0, rate_K_per_s=5 / 60),
                FurnaceSegment("dwell", duration_s=8 * 3600.0),
                FurnaceSegment("step", 25.0),
            ]
        )
        await furnace.run_program()
        t0 = loop.time()
        polls = 0
        worst_dwell = 0.0
        while True:
            status = await furnace.program_status()
            pv = await furnace.read_temperature()
            await furnace.read_setpoint()
            await furnace.read_output()
            polls += 1
            t = loop.time() - t0
            if 115 * 60 + 1800 < t < 115 * 60 + 8 * 3600:
                worst_dwell = max(worst_dwell, abs(pv - 600.0))
            if status == "complete" and pv < 100.0:
                break
            await asyncio.sleep(poll_s)
        await furnace.safe_state()
        flow = await n2.read_flow() + await o2.read_flow()
        return {
            "simulated_h": (loop.time() - t0) / 3600.0,
            "polls": polls,
            "modbus_frames": fsim.slave.frames_ok,
            "physics_steps": fsim.furnace.steps,
            "worst_dwell_dev_K": worst_dwell,
            "final_flow_sccm": flow,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transport", choices=["tcp", "pty"], default="tcp")
    ap.add_argument("--poll", type=float, default=60.0, help="host poll period, simulated s")
    args = ap.parse_args()
    # pty data takes a moment to surface; TCP loopback is delivered within the write call
    grace = 0.002 if args.transport == "pty" else 0.0
    t0 = time.perf_counter()
    with asyncio.Runner(loop_factory=lambda: new_virtual_loop(grace)) as runner:
        figures = runner.run(anneal(args.transport, args.poll))
    wall = time.perf_counter() - t0
    print(f"anneal 5 K/min -> 600 °C, 8 h dwell, cool to 100 °C over {args.transport}")
    for k, v in figures.items():
        print(f"  {k:20s} {v:,.2f}" if isinstance(v, float) else f"  {k:20s} {v:,}")
    print(f"  wall time            {wall:.3f} s  (target < 1 s)")
    print(f"  speed-up             {figures['simulated_h'] * 3600 / wall:,.0f}x real time")


if __name__ == "__main__":
    main()
