"""Start a simulated MACCOR tester (used by tests, dry runs and ``labrig sim serve``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from labrig.simulators.engine import ChannelEngine
from labrig.simulators.maccor.channel import SimChannel
from labrig.simulators.maccor.server import MacNetServer, MacNetTester

__all__ = ["make_tester", "scaled_clock", "serve_maccor"]

JSON_PORT = 57570
BINARY_PORT = 57560


def scaled_clock(speed: float = 1.0) -> Callable[[], float]:
    """The running loop's time, ``speed`` times faster from now on (1.0: the loop's own)."""
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    loop = asyncio.get_running_loop()
    if speed == 1.0:
        return loop.time
    t0 = loop.time()
    return lambda: t0 + speed * (loop.time() - t0)


def make_tester(
    channels: int | Sequence[ChannelEngine] = 8,
    *,
    cell: Any = None,
    now: Callable[[], float] | None = None,
    seed: int = 0,
    noise: float = 1.0,
) -> MacNetTester:
    """A tester with ``channels`` engines (or the given ones, e.g. to share a cell)."""
    clock = now if now is not None else asyncio.get_running_loop().time
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
) -> Any:
    """``async with serve_maccor(4) as server: server.url`` -> ``tcp://127.0.0.1:<port>``.

    The binary port is opened as on a real tester (0: any free port, ``server.binary_port``
    tells which; None: not opened).
    """
    tester = make_tester(channels, cell=cell, now=scaled_clock(speed), noise=noise)
    async with MacNetServer(
        tester, host=host, port=port, binary_port=binary_port, manipulators=manipulators
    ) as srv:
        yield srv
