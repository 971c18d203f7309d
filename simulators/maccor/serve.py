"""Start a simulated MACCOR tester (used by tests, dry runs and ``labrig sim serve``)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labrig.simulators.clock import Now, loop_clock, scaled_clock
from labrig.simulators.command_log import CommandLog
from labrig.simulators.engine import ChannelEngine
from labrig.simulators.maccor.channel import SimChannel
from labrig.simulators.maccor.server import MacNetServer, MacNetTester

__all__ = ["make_tester", "serve_maccor"]

JSON_PORT = 57570
BINARY_PORT = 57560


def make_tester(
    channels: int | Sequence[ChannelEngine] = 8,
    *,
    cell: Any = None,
    now: Now | None = None,
    seed: int = 0,
    noise: float = 1.0,
) -> MacNetTester:
    """A tester with ``channels`` engines (or the given ones, e.g. to share a cell)."""
    clock = loop_clock(now)
    if isinstance(channels, int):
        engines = [
            ChannelEngine(cell, seed=seed + i, noise=noise, now=clock()) for i in range(channels)
        ]
    else:
        engines = list(channels)
    return MacNetTester([SimChannel(i, e) for i, e in enumerate(engines)], now=clock)


@contextlib.asynccontextmanager
async def serve_maccor(
    channels: int | Sequence[ChannelEngine] = 8,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    manipulators: Sequence[Any] = (),
    speed: float = 1.0,
    cell: Any = None,
    noise: float = 1.0,
    binary_port: int | None = 0,
    command_log: str | Path | None = None,
) -> Any:
    """``async with serve_maccor(4) as server: server.url`` -> ``tcp://127.0.0.1:<port>``.

    The binary port is opened as on a real tester (0: any free port, ``server.binary_port``
    tells which; None: not opened). ``command_log``: a file where every request is logged
    with its time and sender (:mod:`simulators.command_log`).
    """
    tester = make_tester(channels, cell=cell, now=scaled_clock(speed), noise=noise)
    log = CommandLog(command_log) if command_log is not None else None
    try:
        async with MacNetServer(
            tester,
            host=host,
            port=port,
            binary_port=binary_port,
            manipulators=manipulators,
            command_log=log,
        ) as srv:
            yield srv
    finally:
        if log is not None:
            log.close()
