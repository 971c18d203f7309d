"""``driver: remote`` in a dry run: the in-process simulator of the capability stands in
for the other agent's instrument."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..hw.remote import RemoteOptions
from ..registry import NoOptions, SimRequest, SimStarted
from .builtin import SimChamberOptions, simulate_chamber, simulate_eis

__all__ = ["simulate_remote"]


@contextlib.asynccontextmanager
async def simulate_remote(req: SimRequest[RemoteOptions]) -> AsyncIterator[SimStarted]:
    """The in-process simulator of the capability, on the position's cell."""
    if req.options.capability == "impedance":
        eis = SimRequest(req.name, req.channels, NoOptions(), req.labels, req.cell, req.seed)
        async with simulate_eis(eis) as started:
            yield started
    else:
        ch = SimRequest(req.name, req.channels, SimChamberOptions(), req.labels, req.cell,
                        req.seed)  # fmt: skip
        async with simulate_chamber(ch) as started:
            yield started
