"""Simulated tube furnace: thermal physics, a Eurotherm controller's firmware and its
Modbus RTU register map, an independent over-temperature limit, served on a
pseudo-terminal or loopback TCP (RTU framing over TCP).

Start one with :func:`start_eurotherm_sim`::

    sim = await start_eurotherm_sim(limit_C=450.0)
    sim.address            # "tcp://127.0.0.1:PORT" (or serial:///dev/pts/N?baudrate=9600)
    sim.furnace.inject(thermocouple_open=True)  # fault switches on the model
    sim.faults.silent = True                  # byte manipulators on the wire
    await sim.aclose()
"""

from labrig.simulators._serving import SimServer, serve
from labrig.simulators.faults import ReplyFaults
from labrig.simulators.furnace.controller import ControllerModel, PidParams, Segment
from labrig.simulators.furnace.eurotherm import (
    EurothermBank,
    SeriesConfig,
    series_2400,
    series_3200,
)
from labrig.simulators.furnace.modbus_slave import RtuSlave
from labrig.simulators.furnace.physics import FurnaceParams, FurnacePlant, OverTempLimit
from labrig.simulators.furnace.sim import FurnaceSim
from labrig.simulators.furnace.simulator import EurothermSimulator, start_eurotherm_sim

__all__ = [
    "ControllerModel",
    "EurothermBank",
    "EurothermSimulator",
    "FurnaceParams",
    "FurnacePlant",
    "FurnaceSim",
    "OverTempLimit",
    "PidParams",
    "ReplyFaults",
    "RtuSlave",
    "Segment",
    "SeriesConfig",
    "SimServer",
    "series_2400",
    "series_3200",
    "serve",
    "start_eurotherm_sim",
]
