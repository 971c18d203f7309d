"""Simulated Keithley 2450 (SCPI on a raw loopback socket, reached through pyvisa-py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..hw.keithley import K2450Options
from ..registry import ServeOptions, SimRequest, SimStarted

__all__ = ["serve_k2450", "simulate_k2450"]


@contextlib.asynccontextmanager
async def simulate_k2450(req: SimRequest[K2450Options]) -> AsyncIterator[SimStarted]:
    """An SMU sourcing into the position's cell."""
    from labrig.simulators.keithley import serve_k2450 as serve

    from .cell import engine_of

    async with serve(engine_of(req.cell)) as srv:
        yield SimStarted(address=srv.url, model=srv)


@contextlib.asynccontextmanager
async def serve_k2450(opts: ServeOptions) -> AsyncIterator[str]:
    """An SMU with a cell of its own on TCP (port 5025 unless told otherwise)."""
    from labrig.simulators.keithley import serve_k2450 as serve
    from labrig.simulators.keithley.serve import SCPI_PORT

    if opts.pty:
        raise ValueError("the 2450 simulator serves SCPI over TCP only; use --port")
    port = SCPI_PORT if opts.port is None else opts.port
    async with serve(host=opts.host, port=port, speed=opts.speed) as srv:
        yield srv.url
