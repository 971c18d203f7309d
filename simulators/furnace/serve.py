"""The loop's clock sped up, for simulators served on a real clock (``labrig sim serve``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["scaled_clock"]


def scaled_clock(speed: float) -> Callable[[], float]:
    """The loop's clock, running ``speed`` times faster from now (for real-clock serving)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    if speed == 1.0:
        return loop.time
    return lambda: t0 + (loop.time() - t0) * speed
