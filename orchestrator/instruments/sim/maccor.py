"""Simulated MACCOR tester (MacNet JSON-RPC on loopback TCP)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..hw.maccor import MaccorOptions
from ..registry import ServeOptions, SimRequest, SimStarted

__all__ = ["serve_maccor", "simulate_maccor"]


@contextlib.asynccontextmanager
async def simulate_maccor(req: SimRequest[MaccorOptions]) -> AsyncIterator[SimStarted]:
    """A tester with the station's channel count; the position's channels drive its cell."""
    from labrig.simulators.engine import ChannelEngine
    from labrig.simulators.maccor import serve_maccor as serve

    from .cell import engine_of

    now = asyncio.get_running_loop().time()
    engines = [
        engine_of(req.cell) if i in req.labels else ChannelEngine(None, now=now)
        for i in range(req.channels)
    ]
    async with serve(engines) as srv:
        yield SimStarted(address=str(srv.url), model=srv)


@contextlib.asynccontextmanager
async def serve_maccor(opts: ServeOptions) -> AsyncIterator[str]:
    """An 8-channel tester (or ``opts.channels``) on TCP: the JSON-RPC port 57570 and the
    binary port 57560 beside it, as on a tester (clients such as pymacnet open both),
    unless told another port (then the binary port is any free one)."""
    from labrig.simulators.maccor import serve_maccor as serve
    from labrig.simulators.maccor.serve import BINARY_PORT, JSON_PORT

    if opts.pty:
        raise ValueError("the MACCOR tester speaks MacNet over TCP only; use --port")
    port = JSON_PORT if opts.port is None else opts.port
    binary = BINARY_PORT if port == JSON_PORT else 0
    channels = 8 if opts.channels is None else opts.channels
    if not 1 <= channels <= 512:
        raise ValueError(f"a tester has 1 to 512 channels, not {channels}")
    async with serve(channels, host=opts.host, port=port, speed=opts.speed,
                     binary_port=binary, command_log=opts.command_log) as srv:  # fmt: skip
        yield str(srv.url)
