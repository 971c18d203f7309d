"""Alicat mass-flow controllers: several unit ids on one serial bus (ASCII)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pydantic import Field

from labrig.drivers.capabilities import GasFlow

from ..registry import Handle, InstrumentLimits, InstrumentOptions, OpenRequest

__all__ = ["AlicatOptions", "alicat_limits", "open_alicat"]


class AlicatOptions(InstrumentOptions):
    units: str = Field(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        pattern=r"^[A-Z]{1,26}$",
        description="unit id of channel 0, 1, ... on the bus",
    )
    full_scale_sccm: float | None = Field(None, gt=0, description="largest setpoint allowed")
    safe_flow_sccm: float | None = Field(
        None, ge=0, description="flow set by safe_state (None: keep the flow, a purge stays on)"
    )
    timeout_s: float = Field(0.5, gt=0, description="deadline of one reply")
    retries: int = Field(2, ge=0)

    def check_channels(self, channels: int) -> None:
        if len(set(self.units)) != len(self.units):
            raise ValueError(f"options.units {self.units!r} repeats a unit id")
        if channels > len(self.units):
            raise ValueError(
                f"options.units {self.units!r} names {len(self.units)} unit ids "
                f"for {channels} channels"
            )


def alicat_limits(o: AlicatOptions) -> InstrumentLimits:
    return InstrumentLimits(
        model="Alicat mass-flow controller", settings={"flow_sccm": "options.full_scale_sccm"},
        flow_sccm=o.full_scale_sccm,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def open_alicat(req: OpenRequest[AlicatOptions]) -> AsyncIterator[Handle]:
    from labrig.drivers.alicat import AlicatBus, AlicatFlow
    from labrig.drivers.transport import transport_from_url

    o = req.options
    async with transport_from_url(req.address) as link:
        bus = AlicatBus(link, timeout_s=o.timeout_s, retries=o.retries)

        def line(index: int) -> GasFlow:
            unit = o.units[index]
            label = req.labels.get(index)
            return AlicatFlow(
                bus,
                unit,
                name=f"{req.name}/{unit}" + (f" ({label})" if label else ""),
                full_scale_sccm=o.full_scale_sccm,
                safe_flow_sccm=o.safe_flow_sccm,
            )

        yield Handle(req.name, gas=line)
