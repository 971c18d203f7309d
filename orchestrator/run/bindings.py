"""The instruments serving one run, as capabilities."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.capabilities import (
    ChamberController,
    CyclerChannel,
    ImpedanceChannel,
    Instrument,
)

__all__ = ["Booking", "RunBindings"]

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
