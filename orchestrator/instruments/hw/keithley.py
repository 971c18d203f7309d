"""Keithley 2450 source-measure unit as a galvanostat, SCPI over VISA."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pydantic import Field

from ..registry import Handle, InstrumentLimits, InstrumentOptions, OpenRequest

__all__ = ["K2450Options", "k2450_limits", "open_k2450"]


class K2450Options(InstrumentOptions):
    timeout_s: float = Field(2.0, gt=0, description="deadline of one SCPI query")
    poll_s: float = Field(1.0, gt=0, description="how often the host reads during a step")
    max_current_A: float = Field(1.05, gt=0, description="the 2450's (and 2400's) 1.05 A DC")


def k2450_limits(o: K2450Options) -> InstrumentLimits:
    return InstrumentLimits(
        model="Keithley 2450",
        settings={"current_A": "options.max_current_A"},
        current_A=o.max_current_A,
    )


@contextlib.asynccontextmanager
async def open_k2450(req: OpenRequest[K2450Options]) -> AsyncIterator[Handle]:
    from labrig.drivers.keithley import K2450Channel

    o = req.options
    channel = K2450Channel.from_url(
        req.address, name=req.name, timeout_s=o.timeout_s, poll_s=o.poll_s
    )
    async with channel:
        # one channel: the instrument's own
        yield Handle(req.name, cycler=lambda _index: channel)
