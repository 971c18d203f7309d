"""The served chamber and its async factory."""

from __future__ import annotations

from typing import Literal

from labrig.simulators._serving import Replying, ServedSimulator, SimServer, serve
from labrig.simulators.chamber.model import ChamberModel, ChamberParams
from labrig.simulators.chamber.protocol import EspecDevice
from labrig.simulators.clock import Now, loop_clock
from labrig.simulators.faults import ReplyFaults

__all__ = ["EspecSimulator", "start_espec_sim"]


class EspecSimulator(ServedSimulator):
    """A served chamber: ``address``, ``model`` (fault switches), ``faults``."""

    def __init__(self, server: SimServer, faults: ReplyFaults, device: EspecDevice) -> None:
        super().__init__(server, faults)
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
    now: Now | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> EspecSimulator:
    """Serve a chamber at room temperature in STANDBY."""
    clock = loop_clock(now)
    model = ChamberModel(clock, params if params is not None else ChamberParams())
    device = EspecDevice(model)
    faults = faults if faults is not None else ReplyFaults()
    server = await serve(
        Replying(device), transport=transport, baudrate=baudrate, host=host, port=port,
        manipulators=[faults],
    )  # fmt: skip
    return EspecSimulator(server, faults, device)
