"""Alicat ASCII on one serial bus (sans I/O): several unit ids answer on one line.

Commands end in CR and start with the unit id; a unit answers only its own id, so a
command for an absent unit meets silence, as on a real bus. Understood: poll (bare id),
``S <value>`` / ``S<value>`` setpoint, ``G<n>`` gas, ``R<n>`` / ``$$R<n>`` register read,
``W<n>=<v>`` / ``$$W<n>=<v>`` register write (46: gas number in its low 9 bits).
Anything else answers ``<id> ?``.
"""

from __future__ import annotations

import re

from labrig.simulators.gas.mfc import MfcModel

__all__ = ["AlicatBusDevice", "format_frame"]

_SETPOINT = re.compile(r"S\s*([+-]?\d+(?:\.\d*)?)")
_GAS = re.compile(r"G\s*(\d+)")
_READ = re.compile(r"(?:\$\$)?R\s*(\d+)")
_WRITE = re.compile(r"(?:\$\$)?W\s*(\d+)\s*=\s*([+-]?\d+)")
GAS_REGISTER = 46


def format_frame(unit: str, mfc: MfcModel) -> str:
    p, t, vol, mass, sp, gas, status = mfc.reading()
    fields = [unit, *(f"{v:+07.2f}" for v in (p, t, vol, mass, sp)), gas, *status]
    return " ".join(fields)


class AlicatBusDevice:
    """The controllers on one line, keyed by unit id."""

    def __init__(self, units: dict[str, MfcModel], *, max_line: int = 256) -> None:
        self.units = units
        self.max_line = max_line
        self._buf = bytearray()
        self.lines = 0

    def feed(self, data: bytes, now: float) -> list[bytes]:
        self._buf += data
        replies = []
        while (i := self._buf.find(b"\r")) >= 0:
            line = bytes(self._buf[:i])
            del self._buf[: i + 1]
            reply = self.handle(line)
            if reply is not None:
                replies.append(reply.encode("ascii") + b"\r")
        if len(self._buf) > self.max_line:
            self._buf.clear()  # a runaway line without CR: drop it like a real UART buffer
        return replies

    def handle(self, raw: bytes) -> str | None:
        self.lines += 1
        try:
            text = raw.decode("ascii").strip("\n ")
        except UnicodeDecodeError:
            return None
        if not text or text[0] not in self.units:
            return None
        unit, rest = text[0], text[1:].strip()
        mfc = self.units[unit]
        if not rest:
            return format_frame(unit, mfc)
        if m := _SETPOINT.fullmatch(rest):
            mfc.set_setpoint(float(m.group(1)))
            return format_frame(unit, mfc)
        if m := _GAS.fullmatch(rest):
            if not mfc.select_gas(int(m.group(1))):
                return f"{unit} ?"
            mfc.registers[GAS_REGISTER] = mfc.gas_number
            return format_frame(unit, mfc)
        if m := _READ.fullmatch(rest):
            reg = int(m.group(1))
            value = mfc.gas_number if reg == GAS_REGISTER else mfc.registers.get(reg, 0)
            return f"{unit} {reg:03d} = {value}"
        if m := _WRITE.fullmatch(rest):
            reg, value = int(m.group(1)), int(m.group(2))
            if reg == GAS_REGISTER:
                if not mfc.select_gas(value & 0x1FF):
                    return f"{unit} ?"
                value = (value & ~0x1FF) | mfc.gas_number
            mfc.registers[reg] = value
            return f"{unit} {reg:03d} = {value}"
        return f"{unit} ?"
