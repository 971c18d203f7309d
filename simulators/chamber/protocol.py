"""ESPEC-style chamber ASCII (sans I/O): CR LF lines; ``OK:`` acknowledgements, ``NA:``
refusals."""

from __future__ import annotations

import re

from labrig.simulators.chamber.model import ChamberModel

__all__ = ["EspecDevice"]

_SET = re.compile(r"TEMP,\s*([SHL])\s*([+-]?\d+(?:\.\d+)?)")


class EspecDevice:
    def __init__(self, model: ChamberModel, *, max_line: int = 256) -> None:
        self.model = model
        self.max_line = max_line
        self._buf = bytearray()

    def feed(self, data: bytes, now: float) -> list[bytes]:
        self._buf += data
        replies = []
        while (i := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:i]).rstrip(b"\r")
            del self._buf[: i + 1]
            replies.append(self.handle(line).encode("ascii") + b"\r\n")
        if len(self._buf) > self.max_line:
            self._buf.clear()
        return replies

    def handle(self, raw: bytes) -> str:
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            return "NA:COMMAND ERR"
        m = self.model
        cmd = text.upper()
        if cmd == "TEMP?":
            return f"{m.measured():.1f},{m.setpoint_C:.1f},{m.upper_C:.1f},{m.lower_C:.1f}"
        if cmd == "MON?":
            return f"{m.measured():.1f},,{m.mode if m.power else 'OFF'},{m.alarms()}"
        if cmd == "MODE?":
            return m.mode
        if match := _SET.fullmatch(cmd):
            which, value = match.group(1), float(match.group(2))
            p = m.params
            if not p.min_C <= value <= p.max_C:
                return "NA:DATA OUT OF RANGE"
            m.advance()
            if which == "S":
                if not m.lower_C < value < m.upper_C:
                    return "NA:DATA OUT OF RANGE"
                m.setpoint_C = value
            elif which == "H":
                m.upper_C = value
            else:
                m.lower_C = value
            return f"OK:{text}"
        if cmd in ("POWER,ON", "POWER,OFF"):
            m.advance()
            m.power = cmd.endswith("ON")
            return f"OK:{text}"
        if cmd in ("MODE,CONSTANT", "MODE,STANDBY", "MODE,OFF"):
            if not m.power and cmd != "MODE,OFF":
                return "NA:POWER OFF"
            m.advance()
            m.mode = cmd.split(",")[1]
            return f"OK:{text}"
        return "NA:COMMAND ERR"
