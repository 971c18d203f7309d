"""ESPEC-style temperature chambers: ASCII lines ending CR LF.

Usage::

    chamber = EspecChamber(transport)
    await chamber.set_temperature(25.0)
"""

from labrig.drivers.espec._codec import (
    MODES,
    ChamberMonitor,
    ChamberRefused,
    ChamberTemperature,
    decode_monitor,
    decode_ok,
    decode_temperature,
    encode,
    encode_mode,
    encode_power,
    encode_setpoint,
)
from labrig.drivers.espec._driver import EspecChamber

__all__ = [
    "MODES",
    "ChamberMonitor",
    "ChamberRefused",
    "ChamberTemperature",
    "EspecChamber",
    "decode_monitor",
    "decode_ok",
    "decode_temperature",
    "encode",
    "encode_mode",
    "encode_power",
    "encode_setpoint",
]
