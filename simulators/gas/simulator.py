"""The served Alicat bus and its async factory."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from labrig.simulators._serving import Replying, ServedSimulator, SimServer, serve
from labrig.simulators.clock import Now, loop_clock
from labrig.simulators.faults import ReplyFaults
from labrig.simulators.gas.bus import AlicatBusDevice
from labrig.simulators.gas.mfc import GAS_TABLE, MfcModel, MfcParams

__all__ = ["AlicatSimulator", "start_alicat_sim"]

_GAS_BY_NAME = {v.lower(): k for k, v in GAS_TABLE.items()}


class AlicatSimulator(ServedSimulator):
    """A served bus: ``address``, ``units`` (the models, for fault switches), ``faults``."""

    def __init__(self, server: SimServer, faults: ReplyFaults, device: AlicatBusDevice) -> None:
        super().__init__(server, faults)
        self.device = device

    @property
    def units(self) -> dict[str, MfcModel]:
        return self.device.units


async def start_alicat_sim(
    *,
    units: Mapping[str, str] | None = None,
    transport: Literal["tcp", "pty"] = "tcp",
    baudrate: int = 19200,
    params: MfcParams | None = None,
    faults: ReplyFaults | None = None,
    now: Now | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AlicatSimulator:
    """Serve controllers ``units`` (unit id -> initial gas name; default A: N2, B: O2)."""
    clock = loop_clock(now)
    base = params if params is not None else MfcParams()
    models: dict[str, MfcModel] = {}
    for i, (unit, gas) in enumerate((units or {"A": "N2", "B": "O2"}).items()):
        if len(unit) != 1 or not unit.isupper():
            raise ValueError(f"unit id must be one letter A-Z, got {unit!r}")
        try:
            number = _GAS_BY_NAME[gas.lower()]
        except KeyError:
            raise ValueError(
                f"unknown gas {gas!r}; known: {', '.join(GAS_TABLE.values())}"
            ) from None
        p = dataclasses.replace(base, seed=base.seed + i)
        models[unit] = MfcModel(clock, p, gas_number=number)
    device = AlicatBusDevice(models)
    faults = faults if faults is not None else ReplyFaults()
    server = await serve(
        Replying(device), transport=transport, baudrate=baudrate, host=host, port=port,
        manipulators=[faults],
    )  # fmt: skip
    return AlicatSimulator(server, faults, device)
