"""The assembled Eurotherm simulator and its async factory."""

from __future__ import annotations

from typing import Literal

from labrig.simulators._serving import Replying, ServedSimulator, SimServer, serve
from labrig.simulators.clock import Now, loop_clock
from labrig.simulators.faults import ReplyFaults
from labrig.simulators.furnace.controller import PidParams
from labrig.simulators.furnace.eurotherm import (
    EurothermBank,
    SeriesConfig,
    series_2400,
    series_3200,
)
from labrig.simulators.furnace.modbus_slave import RtuSlave
from labrig.simulators.furnace.physics import FurnaceParams
from labrig.simulators.furnace.sim import FurnaceSim

__all__ = ["EurothermSimulator", "start_eurotherm_sim"]


class EurothermSimulator(ServedSimulator):
    """A served Eurotherm: ``address`` for the driver, the model objects for fault
    switches and inspection (``furnace``, ``bank``, ``slave``, ``faults``)."""

    def __init__(
        self,
        server: SimServer,
        faults: ReplyFaults,
        furnace: FurnaceSim,
        bank: EurothermBank,
        slave: RtuSlave,
    ) -> None:
        super().__init__(server, faults)
        self.furnace = furnace
        self.bank = bank
        self.slave = slave


async def start_eurotherm_sim(
    *,
    series: Literal["2400", "3200"] | SeriesConfig = "2400",
    address: int = 1,
    transport: Literal["tcp", "pty"] = "tcp",
    baudrate: int = 9600,
    limit_C: float | None = None,
    start_C: float | None = None,
    params: FurnaceParams | None = None,
    pid: PidParams | None = None,
    faults: ReplyFaults | None = None,
    now: Now | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> EurothermSimulator:
    """Serve a simulated furnace with a Eurotherm controller at Modbus ``address``.

    ``limit_C`` adds the independent latching over-temperature limit. ``now`` defaults to
    the running loop's clock (virtual in dry runs).
    """
    config = (
        series
        if isinstance(series, SeriesConfig)
        else series_2400()
        if series == "2400"
        else series_3200()
    )
    furnace = FurnaceSim(
        loop_clock(now),
        params=params,
        pid=pid,
        limit_C=limit_C,
        start_C=start_C,
    )
    bank = EurothermBank(furnace, config)
    slave = RtuSlave(address, bank)
    faults = faults if faults is not None else ReplyFaults()
    server = await serve(
        Replying(slave), transport=transport, baudrate=baudrate, host=host, port=port,
        manipulators=[faults],
    )  # fmt: skip
    return EurothermSimulator(server, faults, furnace, bank, slave)
