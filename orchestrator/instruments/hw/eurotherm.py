"""Eurotherm 2400 / 3200 furnace controllers over Modbus RTU."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field, field_validator

from ..registry import Handle, InstrumentOptions, OpenRequest

__all__ = ["EurothermOptions", "open_eurotherm"]


class EurothermOptions(InstrumentOptions):
    series: Literal["2400", "3200"] = "2400"
    unit: int = Field(1, ge=1, le=254, description="the controller's Modbus address")
    decimals: int = Field(1, ge=0, le=3, description="decimal places of the display")

    @field_validator("series", mode="before")
    @classmethod
    def _series_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value  # `series: 2400` in YAML


@contextlib.asynccontextmanager
async def open_eurotherm(req: OpenRequest[EurothermOptions]) -> AsyncIterator[Handle]:
    from labrig.drivers.eurotherm import EurothermFurnace, settings_2400, settings_3200
    from labrig.drivers.modbus_rtu import ModbusRtuClient
    from labrig.drivers.transport import transport_from_url

    o = req.options
    settings = (settings_2400 if o.series == "2400" else settings_3200)(decimals=o.decimals)
    async with transport_from_url(req.address) as link:
        furnace = EurothermFurnace(ModbusRtuClient(link), o.unit, settings, name=req.name)
        yield Handle(req.name, furnace=lambda _index: furnace)
