"""Simulated PalmSens EmStat (MethodSCRIPT on a pseudo-terminal or loopback TCP)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..hw.palmsens import PalmSensOptions
from ..registry import ServeOptions, SimRequest, SimStarted

__all__ = ["serve_palmsens", "simulate_palmsens"]


@contextlib.asynccontextmanager
async def simulate_palmsens(req: SimRequest[PalmSensOptions]) -> AsyncIterator[SimStarted]:
    """A potentiostat measuring the position's cell.

    Served on loopback TCP (the lab's unit is on serial): a dry run on the virtual clock
    then needs no pseudo-terminal timing slack.
    """
    from labrig.simulators.palmsens import serve_palmsens as serve

    from .cell import engine_of

    async with serve(engine_of(req.cell), pty=False) as srv:
        yield SimStarted(address=srv.url, model=srv)


@contextlib.asynccontextmanager
async def serve_palmsens(opts: ServeOptions) -> AsyncIterator[str]:
    """A USB serial device: a pseudo-terminal unless a TCP port is asked for."""
    from labrig.simulators.palmsens import serve_palmsens as serve

    use_pty = opts.pty or opts.port is None
    async with serve(pty=use_pty, host=opts.host, port=opts.port or 0, speed=opts.speed) as srv:
        yield srv.url
