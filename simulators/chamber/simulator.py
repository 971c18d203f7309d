"""The served chamber and its async factory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from labrig.simulators.chamber.model import ChamberModel, ChamberParams
from labrig.simulators.chamber.protocol import EspecDevice
from labrig.simulators.furnace.serving import ReplyFaults, ServedSimulator, SimServer, serve

__all__ = ["EspecSimulator", "start_espec_sim"]


class EspecSimulator(ServedSimulator):
    """A served chamber: ``address``, ``model`` (fault switches), ``faults``."""

    def __init__(self, server: SimServer, device: EspecDevice) -> None:
        super().__init__(server)
        self.device = device

    @property
    def model(self) -> ChamberModel:
        return self.device.model


async def start_espec_sim(
    *,
    transport: Literal["tcp", "pty"] = "tcp",
    baudrate: int = 9600,
    params: ChamberParams | None = None,
    faults: ReplyFaults | None = None,
    now: Callable[[], float] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> EspecSimulator:
    """Serve a chamber at room temperature in STANDBY."""
    clock = now if now is not None else asyncio.get_running_loop().time
    model = ChamberModel(clock, params if params is not None else ChamberParams())
    device = EspecDevice(model)
    server = await serve(
        device, transport=transport, baudrate=baudrate, faults=faults, host=host, port=port
    )
    return EspecSimulator(server, device)
