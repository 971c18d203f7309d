"""Alicat mass-flow controller ASCII protocol (pure, no I/O).

Every command starts with the unit id (A-Z) and ends with CR, and so does every reply.
A poll (the bare id) answers a data frame: pressure (psia), temperature (°C), volumetric
flow, mass flow, setpoint, gas name, then optional status words (MOV, VOV, LCK, HLD ...).
Setpoint (``S``) and gas (``G``) commands answer a data frame too; registers answer
``<id> <n> = <value>``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from labrig.drivers.capabilities import InstrumentProtocolError

__all__ = [
    "GAS_NUMBERS",
    "AlicatFrame",
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

# Gas numbers from the Alicat gas table (first entries; check the unit's own list).
GAS_NUMBERS = {
    "Air": 0,
    "Ar": 1,
    "CH4": 2,
    "CO": 3,
    "CO2": 4,
    "C2H6": 5,
    "H2": 6,
    "He": 7,
    "N2": 8,
    "N2O": 9,
    "Ne": 10,
    "O2": 11,
}
_GAS_BY_LOWER = {k.lower(): v for k, v in GAS_NUMBERS.items()}

_UNIT_RE = re.compile(r"[A-Z]")
_NUMBER_RE = re.compile(r"[+-]?\d+(\.\d+)?")
_STATUS_RE = re.compile(r"[A-Z]{2,4}")
_REGISTER_RE = re.compile(r"([A-Z])\s+0*(\d+)\s*=\s*([+-]?\d+)")


def _check_unit(unit: str) -> None:
    if not _UNIT_RE.fullmatch(unit):
        raise ValueError(f"Alicat unit id must be one letter A-Z, got {unit!r}")


def format_number(value: float) -> str:
    """Shortest plain decimal with at least one decimal place: 50 -> '50.0'."""
    if not math.isfinite(value):
        raise ValueError(f"value must be finite, got {value}")
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def encode_poll(unit: str) -> bytes:
    _check_unit(unit)
    return f"{unit}\r".encode("ascii")


def encode_setpoint(unit: str, value: float) -> bytes:
    """``AS 50.0``: setpoint in the controlled quantity's units (sccm for mass flow)."""
    _check_unit(unit)
    if value < 0:
        raise ValueError(f"setpoint must be >= 0, got {value}")
    return f"{unit}S {format_number(value)}\r".encode("ascii")


def gas_number(gas: str | int) -> int:
    """A gas name (``N2``, ``o2``, ``Air``) or number to the gas table number."""
    if isinstance(gas, int):
        if not 0 <= gas <= 511:
            raise ValueError(f"gas number must be 0..511, got {gas}")
        return gas
    try:
        return _GAS_BY_LOWER[gas.strip().lower()]
    except KeyError:
        known = ", ".join(GAS_NUMBERS)
        raise ValueError(f"unknown gas {gas!r}; known: {known}") from None


def encode_gas(unit: str, gas: str | int) -> bytes:
    """``AG8`` selects N2."""
    _check_unit(unit)
    return f"{unit}G{gas_number(gas)}\r".encode("ascii")


def encode_read_register(unit: str, register: int) -> bytes:
    _check_unit(unit)
    if not 0 <= register <= 999:
        raise ValueError(f"register must be 0..999, got {register}")
    return f"{unit}R{register}\r".encode("ascii")


def encode_write_register(unit: str, register: int, value: int) -> bytes:
    _check_unit(unit)
    if not 0 <= register <= 999:
        raise ValueError(f"register must be 0..999, got {register}")
    return f"{unit}W{register}={value}\r".encode("ascii")


@dataclass(frozen=True, slots=True)
class AlicatFrame:
    """One data frame. Flows in the unit's engineering units (sccm / ccm here)."""

    unit: str
    pressure_psia: float
    temperature_C: float
    volumetric_flow: float
    mass_flow: float
    setpoint: float
    gas: str
    status: tuple[str, ...] = ()


def _text(reply: bytes, command: bytes) -> str:
    try:
        text = reply.decode("ascii")
    except UnicodeDecodeError:
        raise InstrumentProtocolError(
            "non-ASCII bytes in Alicat reply", command=command, reply=reply
        ) from None
    text = text.removesuffix("\r").strip()
    if not text:
        raise InstrumentProtocolError("empty Alicat reply", command=command, reply=reply)
    return text


def _check_reply_unit(fields: list[str], unit: str, command: bytes, reply: bytes) -> None:
    if fields[0] != unit:
        raise InstrumentProtocolError(
            f"reply from unit {fields[0]!r}, expected {unit!r}", command=command, reply=reply
        )
    if len(fields) >= 2 and fields[1] == "?":
        raise InstrumentProtocolError(
            "the controller did not accept the command", command=command, reply=reply
        )


def decode_frame(unit: str, reply: bytes, command: bytes = b"") -> AlicatFrame:
    """Parse a data frame from ``unit``; anything else raises InstrumentProtocolError."""
    fields = _text(reply, command).split()
    _check_reply_unit(fields, unit, command, reply)
    if len(fields) < 7:
        raise InstrumentProtocolError(
            f"data frame has {len(fields)} fields, expected at least 7",
            command=command,
            reply=reply,
        )
    numbers: list[float] = []
    for f in fields[1:6]:
        if not _NUMBER_RE.fullmatch(f):
            raise InstrumentProtocolError(
                f"{f!r} is not a number in the data frame", command=command, reply=reply
            )
        numbers.append(float(f))
    gas = fields[6]
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9\-]{0,11}", gas):
        raise InstrumentProtocolError(f"bad gas name {gas!r}", command=command, reply=reply)
    status = tuple(fields[7:])
    for word in status:
        if not _STATUS_RE.fullmatch(word):
            raise InstrumentProtocolError(f"bad status word {word!r}", command=command, reply=reply)
    p, t, vol, mass, sp = numbers
    return AlicatFrame(unit, p, t, vol, mass, sp, gas, status)


def decode_register(unit: str, register: int, reply: bytes, command: bytes = b"") -> int:
    """Parse ``A 046 = 8`` for ``register``."""
    text = _text(reply, command)
    _check_reply_unit(text.split(), unit, command, reply)
    m = _REGISTER_RE.fullmatch(text)
    if m is None or int(m.group(2)) != register:
        raise InstrumentProtocolError(
            f"expected register {register} = <value>", command=command, reply=reply
        )
    return int(m.group(3))
