"""ESPEC-style climate chambers (ASCII lines over TCP or serial)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from ..registry import Handle, InstrumentOptions, OpenRequest

__all__ = ["EspecOptions", "open_espec"]


class EspecOptions(InstrumentOptions):
    timeout_s: float = Field(1.0, gt=0, description="deadline of one reply line")
    safe_mode: Literal["STANDBY", "OFF"] = "STANDBY"


@contextlib.asynccontextmanager
async def open_espec(req: OpenRequest[EspecOptions]) -> AsyncIterator[Handle]:
    from labrig.drivers.espec import EspecChamber
    from labrig.drivers.transport import transport_from_url

    o = req.options
    async with transport_from_url(req.address) as link:
        chamber = EspecChamber(link, name=req.name, timeout_s=o.timeout_s, safe_mode=o.safe_mode)
        yield Handle(req.name, chamber=lambda _index: chamber)
