"""MACCOR Series 4000 testers over MacNet JSON-RPC (``tcp://host:57570``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pydantic import Field

from ..registry import Handle, InstrumentLimits, InstrumentOptions, OpenRequest

__all__ = ["MaccorOptions", "maccor_limits", "open_maccor"]


class MaccorOptions(InstrumentOptions):
    timeout_s: float = Field(5.0, gt=0, description="deadline of one MacNet call")
    retries: int = Field(2, ge=0, description="retries of an idempotent call")
    reconnect_s: float = Field(60.0, gt=0, description="how long to try to reconnect")
    records_per_read: int = Field(100_000, ge=1, description="records per (1,7) read")
    # one (4,1) status poll per tester for all the runs on it (drivers.maccor.board)
    shared_status: bool = True
    max_current_A: float | None = Field(
        None, gt=0, description="the channels' largest current range (None: not checked)"
    )


def maccor_limits(o: MaccorOptions) -> InstrumentLimits:
    return InstrumentLimits(
        model="MACCOR Series 4000",
        settings={"current_A": "options.max_current_A"},
        current_A=o.max_current_A,
    )


@contextlib.asynccontextmanager
async def open_maccor(req: OpenRequest[MaccorOptions]) -> AsyncIterator[Handle]:
    from labrig.drivers.maccor import MaccorCycler

    o = req.options
    cycler = MaccorCycler.from_url(
        req.address,
        channels=sorted(req.labels) or [0],
        name=req.name,
        timeout_s=o.timeout_s,
        retries=o.retries,
        reconnect_s=o.reconnect_s,
        records_per_read=o.records_per_read,
        shared_status=o.shared_status,
    )
    async with cycler:
        yield Handle(req.name, cycler=cycler.channel)
