"""Eurotherm 2400 / 3200 furnace controllers over Modbus RTU.

Usage::

    client = ModbusRtuClient(stream)            # one per bus
    furnace = EurothermFurnace(client, address=1, settings=settings_2400())
    await furnace.load_program([FurnaceSegment("ramp", 400.0, rate_K_per_s=2 / 60), ...])
    await furnace.run_program()
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
