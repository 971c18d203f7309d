"""ESPEC-style temperature chamber ASCII protocol (pure, no I/O).

Lines end in CR LF. ``TEMP?`` answers ``measured,setpoint,upper,lower``; a setting such as
``TEMP,S25.0`` answers ``OK:TEMP,S25.0``; refusals start with ``NA``. ``MON?`` answers
``temperature,humidity,mode,alarms`` (humidity empty on a temperature-only chamber).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from labrig.drivers.capabilities import InstrumentProtocolError

__all__ = [
    "MODES",
    "ChamberMonitor",
    "ChamberRefused",
    "ChamberTemperature",
    "decode_monitor",
    "decode_ok",
    "decode_temperature",
    "encode",
    "encode_mode",
    "encode_power",
    "encode_setpoint",
]

MODES = ("CONSTANT", "STANDBY", "OFF")
Mode = Literal["CONSTANT", "STANDBY", "OFF"]
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


class ChamberRefused(InstrumentProtocolError):
    """The chamber answered ``NA``: it understood and refused the command."""


def encode(command: str) -> bytes:
    if not command or any(c in command for c in "\r\n") or not command.isascii():
        raise ValueError(f"bad chamber command {command!r}")
    return command.encode("ascii") + b"\r\n"


def encode_setpoint(celsius: float) -> bytes:
    if not math.isfinite(celsius):
        raise ValueError(f"setpoint must be finite, got {celsius}")
    return encode(f"TEMP,S{celsius:.1f}")


def encode_power(on: bool) -> bytes:
    return encode("POWER,ON" if on else "POWER,OFF")


def encode_mode(mode: str) -> bytes:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return encode(f"MODE,{mode}")


def _line(reply: bytes, command: bytes) -> str:
    try:
        text = reply.decode("ascii")
    except UnicodeDecodeError:
        raise InstrumentProtocolError(
            "non-ASCII bytes in chamber reply", command=command, reply=reply
        ) from None
    text = text.removesuffix("\n").removesuffix("\r").strip()
    if not text:
        raise InstrumentProtocolError("empty chamber reply", command=command, reply=reply)
    if text.startswith("NA"):
        raise ChamberRefused("chamber refused the command", command=command, reply=reply)
    return text


def _number(text: str, what: str, command: bytes, reply: bytes) -> float:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise InstrumentProtocolError(
            f"{what} {text!r} is not a number", command=command, reply=reply
        )
    return float(text)


@dataclass(frozen=True, slots=True)
class ChamberTemperature:
    measured_C: float
    setpoint_C: float
    upper_C: float
    lower_C: float


def decode_temperature(reply: bytes, command: bytes = b"TEMP?\r\n") -> ChamberTemperature:
    fields = _line(reply, command).split(",")
    if len(fields) != 4:
        raise InstrumentProtocolError(
            f"TEMP? reply has {len(fields)} fields, expected 4", command=command, reply=reply
        )
    names = ("measured", "setpoint", "upper", "lower")
    m, s, u, lo = (_number(f, n, command, reply) for f, n in zip(fields, names, strict=True))
    return ChamberTemperature(m, s, u, lo)


def decode_ok(command: bytes, reply: bytes) -> None:
    """A setting's acknowledgement must be ``OK:`` + the command as sent."""
    text = _line(reply, command)
    expected = "OK:" + command.decode("ascii").strip()
    if text != expected:
        raise InstrumentProtocolError(f"expected {expected!r}", command=command, reply=reply)


@dataclass(frozen=True, slots=True)
class ChamberMonitor:
    temperature_C: float
    humidity_pct: float | None
    mode: str
    alarms: int


def decode_monitor(reply: bytes, command: bytes = b"MON?\r\n") -> ChamberMonitor:
    fields = _line(reply, command).split(",")
    if len(fields) != 4:
        raise InstrumentProtocolError(
            f"MON? reply has {len(fields)} fields, expected 4", command=command, reply=reply
        )
    temp = _number(fields[0], "temperature", command, reply)
    hum = _number(fields[1], "humidity", command, reply) if fields[1].strip() else None
    mode = fields[2].strip()
    if mode not in MODES:
        raise InstrumentProtocolError(f"unknown mode {mode!r}", command=command, reply=reply)
    if not fields[3].strip().isdigit():
        raise InstrumentProtocolError(
            f"alarm count {fields[3]!r} is not a number", command=command, reply=reply
        )
    return ChamberMonitor(temp, hum, mode, int(fields[3]))
