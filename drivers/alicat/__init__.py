"""Alicat mass-flow controllers: serial ASCII, several unit ids on one bus.

Usage::

    bus = AlicatBus(transport)                       # one per serial line
    n2 = AlicatFlow(bus, "A", name="N2")
    o2 = AlicatFlow(bus, "B", name="O2")
    await n2.select_gas("N2"); await n2.set_flow(118.5)
"""

from labrig.drivers.alicat._codec import (
    GAS_NUMBERS,
    AlicatFrame,
    decode_frame,
    decode_register,
    encode_gas,
    encode_poll,
    encode_read_register,
    encode_setpoint,
    encode_write_register,
    format_number,
    gas_number,
)
from labrig.drivers.alicat._driver import AlicatBus, AlicatFlow, LineStream

__all__ = [
    "GAS_NUMBERS",
    "AlicatBus",
    "AlicatFlow",
    "AlicatFrame",
    "LineStream",
    "decode_frame",
    "decode_register",
    "encode_gas",
    "encode_poll",
    "encode_read_register",
    "encode_setpoint",
    "encode_write_register",
    "format_number",
    "gas_number",
]
