"""ESPEC-style climate chambers (ASCII lines over TCP or serial)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field, model_validator

from ..registry import Handle, InstrumentLimits, InstrumentOptions, OpenRequest

__all__ = ["EspecOptions", "espec_limits", "open_espec"]


class EspecOptions(InstrumentOptions):
    timeout_s: float = Field(1.0, gt=0, description="deadline of one reply line")
    safe_mode: Literal["STANDBY", "OFF"] = "STANDBY"
    min_C: float = Field(-40.0, description="lowest setpoint the chamber holds (its model's)")
    max_C: float = Field(100.0, description="highest setpoint the chamber holds (its model's)")

    @model_validator(mode="after")
    def _range(self) -> EspecOptions:
        if not self.min_C < self.max_C:
            raise ValueError(f"min_C {self.min_C} must be below max_C {self.max_C}")
        return self


def espec_limits(o: EspecOptions) -> InstrumentLimits:
    return InstrumentLimits(
        model="ESPEC chamber", settings={"temperature_C": "options.min_C / max_C"},
        temperature_C=(o.min_C, o.max_C),
    )  # fmt: skip


@contextlib.asynccontextmanager
async def open_espec(req: OpenRequest[EspecOptions]) -> AsyncIterator[Handle]:
    from labrig.drivers.espec import EspecChamber
    from labrig.drivers.transport import transport_from_url

    o = req.options
    async with transport_from_url(req.address) as link:
        chamber = EspecChamber(link, name=req.name, timeout_s=o.timeout_s, safe_mode=o.safe_mode)
        yield Handle(req.name, chamber=lambda _index: chamber)
