"""Eurotherm 2400 / 3200 furnace controllers over Modbus RTU.

Modbus RTU goes through pymodbus (:class:`~drivers.modbus.ModbusRtuBus`). Usage::

    async with EurothermFurnace.from_url("serial:///dev/ttyUSB0?baudrate=9600", 1) as furnace:
        await furnace.load_program([FurnaceSegment("ramp", 400.0, rate_K_per_s=2 / 60), ...])
        await furnace.run_program()

or, for several controllers on one line::

    async with ModbusRtuBus("serial:///dev/ttyUSB0?baudrate=9600") as bus:
        furnace = EurothermFurnace(bus, address=1, settings=settings_2400())
"""

from labrig.drivers.eurotherm._codec import (
    REG,
    SEGMENT_TYPES,
    EurothermSettings,
    SegmentLayout,
    decode_scaled,
    decode_status,
    encode_scaled,
    encode_segments,
    float_address,
    segment_address,
    settings_2400,
    settings_3200,
)
from labrig.drivers.eurotherm._driver import EurothermFurnace, SensorBreak

__all__ = [
    "REG",
    "SEGMENT_TYPES",
    "EurothermFurnace",
    "EurothermSettings",
    "SegmentLayout",
    "SensorBreak",
    "decode_scaled",
    "decode_status",
    "encode_scaled",
    "encode_segments",
    "float_address",
    "segment_address",
    "settings_2400",
    "settings_3200",
]
