"""Garbled instrument replies, 10^4+ per run (RELIABILITY.md): every reply parser of the
drivers gets valid replies mutated (bits flipped, bytes dropped, doubled or inserted,
numbers swapped for NaN/inf/overflow, cut short, grown to megabytes, or pure noise) and
must answer with its own typed error or a value it could have meant: never another
exception, never a non-finite number where the instrument sends finite ones.

The cases are generated here from a fixed seed (derandomized, the same every run) and
fed to the parsers directly, so 10^4 cases take a second or two; the hypothesis tests
next to each codec search the same parsers with shrinking.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from labrig.drivers.alicat import decode_frame, decode_register
from labrig.drivers.biologic import decode as biologic_decode
from labrig.drivers.biologic._structs import Family
from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError
from labrig.drivers.espec import decode_monitor, decode_ok, decode_temperature
from labrig.drivers.keithley import codec as k2450
from labrig.drivers.maccor.codec import decode_reading, decode_reply, decode_safety_limits
from labrig.drivers.maccor.records import HEADER, decode_data, encode_data_row
from labrig.drivers.palmsens.codec import (
    ScriptDecoder,
    decode_package,
    parse_firmware,
    parse_serial,
)

#: what RELIABILITY.md asks of every run of the suite
REQUIRED_CASES = 10_000
SEED = 20_240_601

_NUMBERS = (b"nan", b"NaN", b"-nan", b"inf", b"-Inf", b"1e999", b"-1e999", b"9.9E37",
            b"1e-400", b"-0", b"+", b"-", b".", b"e5", b"0x1F", b"1_000", b"", b"\xff",
            b"1" * 400)  # fmt: skip
_MAX_BYTES = 1 << 20
_SPECIALS = b"\r\n\x00,;:\"'{}[]= \t\xff\x7f"


def _mutate_once(rng: random.Random, data: bytes) -> bytes:
    n = len(data)
    op = rng.randrange(10)
    at = rng.randrange(n + 1)
    if op == 0 and n:  # flip one bit
        i = rng.randrange(n)
        return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]
    if op == 1 and n:  # one byte replaced
        i = rng.randrange(n)
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
    if op == 2:  # a span dropped
        return data[:at] + data[at + rng.randrange(1, 16) :]
    if op == 3:  # random bytes inserted
        return data[:at] + rng.randbytes(rng.randrange(1, 8)) + data[at:]
    if op == 4:  # a span doubled
        end = min(n, at + rng.randrange(1, 32))
        return data[:end] + data[at:end] + data[end:]
    if op == 5:  # cut short
        return data[:at]
    if op == 6:  # a number swapped for a non-finite or malformed one
        digits = [i for i, b in enumerate(data) if 48 <= b <= 57]
        if digits:
            i = rng.choice(digits)
            j = i
            while j < n and (48 <= data[j] <= 57 or data[j] in b".eE+-"):
                j += 1
            return data[:i] + rng.choice(_NUMBERS) + data[j:]
        return data + rng.choice(_NUMBERS)
    if op == 7:  # a separator or terminator where it does not belong
        return data[:at] + bytes([rng.choice(_SPECIALS)]) + data[at:]
    if op == 8:  # oversized (up to a megabyte, however often this is drawn)
        return (data or b"x") * max(1, min(rng.choice((50, 500)), _MAX_BYTES // max(n, 1)))
    return rng.randbytes(rng.randrange(0, 200))  # noise


def mutations(rng: random.Random, corpus: list[bytes], count: int) -> Iterator[bytes]:
    """``count`` garbled versions of the ``corpus`` replies (1-3 mutations each)."""
    for _ in range(count):
        data = rng.choice(corpus)
        for _ in range(rng.randint(1, 3)):
            data = _mutate_once(rng, data)
        yield data


def _finite(*values: float) -> None:
    assert all(math.isfinite(v) for v in values), values


# ----------------------------------------------------------------------------- targets

_CMD = b"cmd"
_READING = {"FClass": 4, "FNum": 7, "Chan": 2, "RF1": 1, "RF2": 0, "Stat": 2,
            "LastRecNum": 42, "Cycle": 0, "Step": 1, "TestTime": 212.5, "StepTime": 209.25,
            "Capacity": 0.001, "Energy": 0.0035, "Current": 0.0016, "Voltage": 3.5,
            "TesterTime": "2024-01-01T00:00:00"}  # fmt: skip
_SAFETY = {"FClass": 6, "FNum": 10, "Chan": 2, "VSafeMax": 4.5, "VSafeMin": 2.5,
           "ISafeChg": 2.5, "ISafeDis": 2.5, "PBatSafeChg": 50.0, "PBatSafeDis": 50.0}  # fmt: skip


def _reply(result: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "result": result, "id": 7}).encode() + b"\r\n"


def maccor_reading(reply: bytes) -> None:
    res = decode_reply(reply, command=_CMD, fclass=4, fnum=7, chan=2, request_id=7)
    r = decode_reading(res, _CMD)
    _finite(r.voltage_V, r.current_A, r.test_time_s)


def maccor_limits(reply: bytes) -> None:
    res = decode_reply(reply, command=_CMD, fclass=6, fnum=10, chan=2, request_id=7)
    lim = decode_safety_limits(res, _CMD)
    _finite(lim.v_max_V, lim.v_min_V, lim.i_chg_A, lim.i_dis_A)


def maccor_data(reply: bytes) -> None:
    batch = decode_data(reply.decode("utf-8", "replace"))
    _finite(*np.asarray(batch.voltage_V, dtype=float).tolist())


def keithley(reply: bytes) -> None:
    for call in (
        lambda: _finite(k2450.decode_number(reply, ":READ?")),
        lambda: k2450.decode_bool(reply, "TRIP?"),
        lambda: _finite(*np.concatenate(k2450.decode_trace(reply, "TRAC", 2)).tolist()),
        lambda: k2450.decode_idn(reply),
        lambda: k2450.decode_error(reply),
    ):
        with contextlib.suppress(InstrumentProtocolError):
            call()


def palmsens(reply: bytes) -> None:
    for call in (
        lambda: ScriptDecoder(max_line=4096).feed(reply),
        lambda: decode_package(reply.decode("ascii", "replace").strip()),
        lambda: parse_serial(reply),
        lambda: parse_firmware(b"tes4\n", reply),
    ):
        with contextlib.suppress(InstrumentProtocolError):
            call()


def alicat(reply: bytes) -> None:
    try:
        f = decode_frame("A", reply)
        _finite(f.pressure_psia, f.temperature_C, f.mass_flow, f.setpoint)
    except InstrumentProtocolError:
        pass
    with contextlib.suppress(InstrumentProtocolError):
        decode_register("A", 46, reply)


def espec(reply: bytes) -> None:
    for call in (
        lambda: _finite(decode_temperature(reply).measured_C),
        lambda: decode_monitor(reply),
        lambda: decode_ok(b"TEMP,S25.0\r\n", reply),
    ):
        with contextlib.suppress(InstrumentError):
            call()


def _f32(x: float) -> bytes:
    return struct.pack("<f", x)


_BL_ROW = struct.pack("<II", 0, 4096) + _f32(3.2) + _f32(1e-3) + struct.pack("<I", 0)


def biologic(reply: bytes) -> None:
    words = np.frombuffer(reply[: len(reply) // 4 * 4], dtype="<u4")
    rows = max(1, len(words) // 5)
    biologic_decode(words, rows=rows, cols=5, technique_id=155, process=0,
                    family=Family.SP300, timebase_s=24e-6)  # fmt: skip


@dataclass(frozen=True)
class Target:
    name: str
    parse: Callable[[bytes], None]
    corpus: list[bytes]
    cases: int
    errors: tuple[type[BaseException], ...] = (InstrumentProtocolError,)


_ROWS = (
    encode_data_row(1, 0, 1, 10.0, 10.0, 1e-5, 3.5e-5, 0.0016, 3.51, "C", 0, 25.0),
    encode_data_row(2, 0, 2, 20.0, 5.0, 2e-6, 7e-6, 0.0016, 3.4, "D", 133, 25.0),
)
_DATA = "\r\n".join((HEADER, *_ROWS)) + "\r\n"

TARGETS = (
    Target("maccor (4,7) reading", maccor_reading, [_reply(_READING)], 2000, (InstrumentError,)),
    Target("maccor (6,10) limits", maccor_limits, [_reply(_SAFETY)], 1000, (InstrumentError,)),
    Target("maccor data file", maccor_data, [_DATA.encode()], 1500),
    Target(
        "keithley 2450 SCPI",
        keithley,
        [
            b"+3.51234E+00\n",
            b"1\n",
            b"0\n",
            b"+3.1E+00,+0.0E+00,+3.2E+00,+1.0E+00\n",
            b"KEITHLEY INSTRUMENTS,MODEL 2450,04511234,1.7.12b\n",
            b'-113,"Undefined header"\n',
        ],
        1500,
    ),
    Target(
        "palmsens MethodSCRIPT",
        palmsens,
        [
            b"e\nM000D\nPdc8000064k;cc8001388m;cdFFFF000u,10\n*\nL\nPab80003E8m\n+\n\x11\r\n",
            b"Pda7F0BDF9u;ba7678CD7p,12,20F,40;cc     nan\n",
            b"iES4SIM0001\n",
            b"tes4_hr1100#Jan 28 2022\nR*\n",
            b"e!4001: Line 3, Col 7\n",
        ],
        1500,
    ),
    Target(
        "alicat",
        alicat,
        [
            b"A +014.70 +025.00 +000.00 +000.00 +050.00 N2\r",
            b"A +014.70 +025.00 +032.10 +031.50 +031.50 O2 MOV LCK\r",
            b"A 046 = 8\r",
        ],
        1000,
    ),
    Target(
        "espec chamber",
        espec,
        [
            b"23.5,25.0,100.0,-40.0\r\n",
            b"25.1,,CONSTANT,0\r\n",
            b"OK:TEMP,S25.0\r\n",
            b"NA:DATA OUT OF RANGE\r\n",
        ],
        1000,
    ),
    Target("biologic data buffer", biologic, [_BL_ROW * 3, _BL_ROW * 40], 500),
)


def test_the_cases_reach_the_reliability_figure() -> None:
    assert sum(t.cases for t in TARGETS) >= REQUIRED_CASES


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_garbled_replies_raise_only_typed_errors(target: Target) -> None:
    rng = random.Random(f"{SEED}:{target.name}")
    for valid in target.corpus:  # the corpus itself parses
        target.parse(valid)
    for reply in mutations(rng, target.corpus, target.cases):
        try:
            target.parse(reply)
        except target.errors:
            pass
        except Exception as exc:
            pytest.fail(f"{target.name}: {type(exc).__name__}: {exc} for reply {reply[:200]!r}")
