"""Gamry Interface 1000 / Reference 600 through GamryCOM (Windows COM server).

A station names the instrument ``gamry://<section>``, its name in the Gamry device list
(``gamry://`` alone: the only one connected).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

from labrig.drivers.capabilities import InstrumentError

from ..registry import Handle, InstrumentOptions, OpenRequest

__all__ = ["GamryOptions", "gamry_handle", "open_gamry_entry"]

SCHEME = "gamry://"


class GamryOptions(InstrumentOptions):
    pstat_class: str = Field("GamryCOM.GamryPC6Pstat", pattern=r"^GamryCOM\.GamryPC[56]Pstat$")
    max_frequency_Hz: float = Field(1e6, gt=0)
    ocv_before_eis_s: float = Field(10.0, gt=0)
    readz_retries: int = Field(10, ge=0)
    poll_s: float = Field(0.2, gt=0)
    supervise_s: float = Field(5.0, gt=0, description="sample period the host ends steps by")
    call_timeout_s: float = Field(10.0, gt=0, description="deadline of one COM call")
    typelib: str | None = Field(None, description="GamryCOM's type library, if not the default")

    def check_channels(self, channels: int) -> None:
        if channels != 1:
            raise ValueError(f"a Gamry potentiostat has one channel, not {channels}")


@contextlib.asynccontextmanager
async def gamry_handle(
    req: OpenRequest[GamryOptions], *, backend: Any = None
) -> AsyncIterator[Handle]:
    """The potentiostat of ``req`` through ``backend`` (None: comtypes and GamryCOM)."""
    from labrig.drivers.gamry import open_gamry

    if not req.address.startswith(SCHEME):
        raise InstrumentError(f"{req.name}: address {req.address!r} must be {SCHEME}<section>")
    section = req.address[len(SCHEME) :] or None
    opts = req.options.model_dump(exclude_none=True)
    async with open_gamry(backend=backend, name=req.name, section=section, **opts) as ch:
        yield Handle(req.name, cycler=lambda _index: ch, impedance=lambda _index: ch)


@contextlib.asynccontextmanager
async def open_gamry_entry(req: OpenRequest[GamryOptions]) -> AsyncIterator[Handle]:
    async with gamry_handle(req) as handle:
        yield handle
