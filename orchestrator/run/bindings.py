"""The instruments serving one run, as capabilities."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.capabilities import (
    ChamberController,
    CyclerChannel,
    ImpedanceChannel,
    Instrument,
)

__all__ = ["CHANNEL_BOUND", "Booking", "RunBindings", "bind_channel"]

#: ``run.json`` key of a run whose cycler channel is told the run from its start
#: (``CyclerChannel.bind_run``): the names of its tests on the instrument carry its tag
CHANNEL_BOUND = "channel_bound"

Booking = Callable[[str], contextlib.AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def _no_booking(_resource: str) -> AsyncIterator[None]:
    yield None


@dataclass
class RunBindings:
    """The instruments serving one cell.

    ``booking(resource)`` is entered around every use of a shared instrument (the
    impedance channel behind a multiplexer): the scheduler makes runs take turns there.
    While a run waits, its cycler channel is at open circuit (a safe point).
    """

    cycler: CyclerChannel
    impedance: ImpedanceChannel | None = None
    chamber: ChamberController | None = None
    extra_safe: list[Instrument] = field(default_factory=list)  # put in their safe state too
    booking: Booking = _no_booking


def bind_channel(cycler: CyclerChannel, run_id: str, meta: Mapping[str, Any]) -> None:
    """Tell ``cycler`` the run of ``meta`` (its ``run.json``), unless the run began
    before runs did so: its tests on the instrument carry no tag, and it goes on finding
    them by the names it gave them."""
    if meta.get(CHANNEL_BOUND):
        cycler.bind_run(run_id)
