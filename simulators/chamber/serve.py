"""``labrig sim serve espec``: a temperature chamber."""

from __future__ import annotations

import contextlib

from labrig.simulators.chamber.simulator import start_espec_sim
from labrig.simulators.clock import scaled_clock
from labrig.simulators.registry import ServeOptions, register

__all__ = ["serve_espec"]


async def serve_espec(options: ServeOptions, stack: contextlib.AsyncExitStack) -> str:
    sim = await start_espec_sim(
        transport="pty" if options.pty else "tcp",
        now=scaled_clock(options.speed),
        host=options.host,
        port=options.port or 0,
    )
    stack.push_async_callback(sim.aclose)
    return sim.address


register("espec", serve_espec)
