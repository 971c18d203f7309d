"""SCPI codec for the Keithley 2450 as a galvanostat: exact command text, checked replies.

Pure functions; nothing here does I/O. Facts (Keithley 2450 SourceMeter reference manual):
current source ``:SOUR:FUNC CURR`` with level ``:SOUR:CURR:LEV`` (negative discharges)
and voltage compliance ``:SOUR:CURR:VLIM``; voltage measurement ``:SENS:FUNC "VOLT"``
read with ``:READ?``; buffered runs via the ``SimpleLoop`` trigger model and
``TRAC:DATA?``. The 2450 reports an overflowed reading as 9.9E37.
"""

from __future__ import annotations

import itertools
import math

from labrig.drivers.capabilities import InstrumentProtocolError

__all__ = [
    "OVERFLOW",
    "SETUP",
    "decode_bool",
    "decode_error",
    "decode_idn",
    "decode_number",
    "decode_trace",
    "fmt",
    "output",
    "source_level",
    "trace_data",
    "trigger_simple_loop",
    "voltage_limit",
]

OVERFLOW = 9.9e37
#: put the unit in galvanostat mode, measuring voltage (after ``*RST``: output off)
SETUP: tuple[str, ...] = ("*CLS", ":SOUR:FUNC CURR", ':SENS:FUNC "VOLT"', ":SOUR:CURR:LEV 0")
READ = ":READ?"
TRIP = ":SOUR:CURR:VLIM:TRIP?"
ERROR = ":SYST:ERR?"
ACTUAL = ':TRAC:ACT? "defbuffer1"'


def fmt(x: float) -> str:
    """A number as the 2450 accepts it (shortest round-trip text, no NaN/inf)."""
    if isinstance(x, bool) or not math.isfinite(x):
        raise ValueError(f"SCPI numbers must be finite, got {x!r}")
    return repr(float(x)).replace("e+", "E+").replace("e-", "E-")


def source_level(current_A: float) -> str:
    return f":SOUR:CURR:LEV {fmt(current_A)}"


def voltage_limit(volts: float) -> str:
    if not math.isfinite(volts) or volts <= 0:
        raise ValueError(f"voltage compliance must be > 0 V, got {volts!r}")
    return f":SOUR:CURR:VLIM {fmt(volts)}"


def output(on: bool) -> str:
    return ":OUTP ON" if on else ":OUTP OFF"


def trigger_simple_loop(count: int, delay_s: float) -> str:
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"reading count must be an int >= 1, got {count!r}")
    if not math.isfinite(delay_s) or delay_s < 0:
        raise ValueError(f"delay must be >= 0 s, got {delay_s!r}")
    return f'TRIG:LOAD "SimpleLoop",{count},{fmt(delay_s)},"defbuffer1"'


def trace_data(count: int) -> str:
    return f'TRAC:DATA? 1,{count},"defbuffer1",READ,REL'


def _text(reply: bytes, command: str) -> str:
    try:
        return reply.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InstrumentProtocolError(
            "reply is not ASCII", command=command, reply=reply[:200]
        ) from None


def decode_number(reply: bytes, command: str) -> float:
    """One finite number; anything else (also an overflow reading) is a protocol error."""
    text = _text(reply, command)
    try:
        x = float(text)
    except ValueError:
        raise InstrumentProtocolError(
            "reply is not a number", command=command, reply=reply[:200]
        ) from None
    if not math.isfinite(x):
        raise InstrumentProtocolError("reply is not finite", command=command, reply=reply[:200])
    if abs(x) >= OVERFLOW * 0.999:
        raise InstrumentProtocolError(
            "measurement overflow (9.9E37)", command=command, reply=reply[:200]
        )
    return x


def decode_bool(reply: bytes, command: str) -> bool:
    text = _text(reply, command)
    if text not in ("0", "1"):
        raise InstrumentProtocolError("reply is not 0 or 1", command=command, reply=reply[:200])
    return text == "1"


def decode_trace(reply: bytes, command: str, count: int) -> tuple[list[float], list[float]]:
    """``TRAC:DATA? ...,READ,REL`` -> (readings, relative times), checked for count/order."""
    text = _text(reply, command)
    parts = text.split(",")
    if len(parts) != 2 * count:
        raise InstrumentProtocolError(
            f"expected {2 * count} values, got {len(parts)}", command=command, reply=reply[:200]
        )
    vals: list[float] = []
    for p in parts:
        try:
            x = float(p)
        except ValueError:
            raise InstrumentProtocolError(
                f"{p[:20]!r} is not a number", command=command, reply=reply[:200]
            ) from None
        if not math.isfinite(x) or abs(x) >= OVERFLOW * 0.999:
            raise InstrumentProtocolError(
                "overflow or non-finite value in buffer", command=command, reply=reply[:200]
            )
        vals.append(x)
    readings, times = vals[0::2], vals[1::2]
    if any(b < a for a, b in itertools.pairwise(times)):
        raise InstrumentProtocolError(
            "buffer times go backwards", command=command, reply=reply[:200]
        )
    return readings, times


def decode_idn(reply: bytes) -> tuple[str, str, str, str]:
    """``*IDN?`` -> (maker, model, serial, firmware); must be a 2450."""
    text = _text(reply, "*IDN?")
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or "2450" not in parts[1]:
        raise InstrumentProtocolError(
            "identity is not a Keithley 2450", command="*IDN?", reply=reply[:200]
        )
    return parts[0], parts[1], parts[2], parts[3]


def decode_error(reply: bytes) -> tuple[int, str]:
    """``SYST:ERR?`` -> (code, message); code 0 is "No error"."""
    text = _text(reply, ERROR)
    code, sep, msg = text.partition(",")
    try:
        n = int(code)
    except ValueError:
        n = None
    if not sep or n is None:
        raise InstrumentProtocolError("malformed error-queue entry", command=ERROR, reply=reply)
    return n, msg.strip().strip('"')
