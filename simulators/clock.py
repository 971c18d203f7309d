"""The clock simulated instruments read.

A simulator reads time from the running event loop, the clock its driver's deadlines
use: in a dry run that loop runs on virtual time (``orchestrator.clock``), so the
instrument's physics and the host's timeouts move together and months pass in seconds.
``labrig sim serve --speed N`` serves on the real clock but lets the instrument live N
times faster: :func:`scaled_clock`. Devices take a ``now`` callable (:data:`Now`) so a
test can also hand them a fixed or stepped clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Now", "loop_clock", "scaled_clock"]

#: seconds on the simulator's clock
Now = Callable[[], float]


def loop_clock(now: Now | None = None) -> Now:
    """``now`` if given, else the running loop's clock."""
    return now if now is not None else asyncio.get_running_loop().time


def scaled_clock(speed: float = 1.0) -> Now:
    """The running loop's clock, running ``speed`` times faster from now on (1.0: itself)."""
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    loop = asyncio.get_running_loop()
    if speed == 1.0:
        return loop.time
    t0 = loop.time()
    return lambda: t0 + speed * (loop.time() - t0)
