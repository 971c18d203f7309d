"""Eurotherm 2400 / 3200 furnace controllers over Modbus RTU."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..registry import Handle, InstrumentLimits, InstrumentOptions, OpenRequest

__all__ = ["EurothermOptions", "eurotherm_limits", "open_eurotherm"]


class EurothermOptions(InstrumentOptions):
    series: Literal["2400", "3200"] = "2400"
    unit: int = Field(1, ge=1, le=254, description="the controller's Modbus address")
    decimals: int = Field(1, ge=0, le=3, description="decimal places of the display")
    min_C: float = Field(0.0, description="lowest target the furnace is asked for")
    max_C: float = Field(1200.0, description="highest target the furnace reaches (check)")

    @field_validator("series", mode="before")
    @classmethod
    def _series_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value  # `series: 2400` in YAML

    @model_validator(mode="after")
    def _range(self) -> EurothermOptions:
        if not self.min_C < self.max_C:
            raise ValueError(f"min_C {self.min_C} must be below max_C {self.max_C}")
        return self


def eurotherm_limits(o: EurothermOptions) -> InstrumentLimits:
    return InstrumentLimits(
        model=f"Eurotherm {o.series} furnace", settings={"temperature_C": "options.min_C / max_C"},
        temperature_C=(o.min_C, o.max_C),
    )  # fmt: skip


@contextlib.asynccontextmanager
async def open_eurotherm(req: OpenRequest[EurothermOptions]) -> AsyncIterator[Handle]:
    from labrig.drivers.eurotherm import EurothermFurnace, settings_2400, settings_3200

    o = req.options
    settings = (settings_2400 if o.series == "2400" else settings_3200)(decimals=o.decimals)
    async with EurothermFurnace.from_url(req.address, o.unit, settings, name=req.name) as furnace:
        yield Handle(req.name, furnace=lambda _index: furnace)
