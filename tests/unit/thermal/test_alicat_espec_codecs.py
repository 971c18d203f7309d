"""Alicat and chamber lines, byte for byte, and their parsers under arbitrary input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.drivers.alicat import (
    decode_frame,
    decode_register,
    encode_gas,
    encode_poll,
    encode_read_register,
    encode_setpoint,
    encode_write_register,
    gas_number,
)
from labrig.drivers.capabilities import InstrumentProtocolError
from labrig.drivers.espec import (
    ChamberRefused,
    decode_monitor,
    decode_ok,
    decode_temperature,
    encode,
    encode_mode,
    encode_power,
)
from labrig.drivers.espec import (
    encode_setpoint as chamber_setpoint,
)


def test_alicat_commands_are_byte_exact() -> None:
    assert encode_poll("A") == b"A\r"
    assert encode_setpoint("A", 50) == b"AS 50.0\r"
    assert encode_setpoint("B", 118.5) == b"BS 118.5\r"
    assert encode_setpoint("B", 31.25) == b"BS 31.25\r"
    assert encode_gas("A", "N2") == b"AG8\r"
    assert encode_gas("B", "o2") == b"BG11\r"
    assert encode_gas("C", "Air") == b"CG0\r"
    assert encode_gas("D", "Ar") == b"DG1\r"
    assert encode_read_register("A", 46) == b"AR46\r"
    assert encode_write_register("A", 46, 8) == b"AW46=8\r"


def test_alicat_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unit id"):
        encode_poll("a")
    with pytest.raises(ValueError, match="unknown gas"):
        gas_number("Unobtainium")
    with pytest.raises(ValueError, match=">= 0"):
        encode_setpoint("A", -1)


def test_alicat_data_frame() -> None:
    f = decode_frame("A", b"A +014.70 +025.00 +000.00 +000.00 +050.00 N2\r")
    assert (f.pressure_psia, f.temperature_C, f.mass_flow, f.setpoint, f.gas) == (
        14.7,
        25.0,
        0.0,
        50.0,
        "N2",
    )
    g = decode_frame("B", b"B +014.70 +025.00 +032.10 +031.50 +031.50 O2 MOV LCK\r")
    assert g.status == ("MOV", "LCK") and g.mass_flow == 31.5


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"B +014.70 +025.00 +000.00 +000.00 +050.00 N2\r", "unit 'B'"),
        (b"A ?\r", "did not accept"),
        (b"A +014.70 +025.00 +000.00\r", "fields"),
        (b"A +014.70 +0x5.00 +000.00 +000.00 +050.00 N2\r", "not a number"),
        (b"A +014.70 +025.00 +000.00 +000.00 +050.00 N2 mov\r", "status word"),
        (b"\xff\xfe\r", "non-ASCII"),
        (b"\r", "empty"),
    ],
)
def test_alicat_bad_frames(reply: bytes, message: str) -> None:
    with pytest.raises(InstrumentProtocolError, match=message) as info:
        decode_frame("A", reply, b"A\r")
    assert info.value.reply == reply


def test_alicat_register_reply() -> None:
    assert decode_register("A", 46, b"A 046 = 8\r") == 8
    assert decode_register("A", 122, b"A 122 = 37\r") == 37
    with pytest.raises(InstrumentProtocolError, match="register 46"):
        decode_register("A", 46, b"A 047 = 8\r")


@given(st.binary(max_size=120))
def test_alicat_parsers_raise_only_protocol_errors(reply: bytes) -> None:
    for parse in (lambda: decode_frame("A", reply), lambda: decode_register("A", 46, reply)):
        with contextlib.suppress(InstrumentProtocolError):
            parse()


def test_chamber_commands_are_byte_exact() -> None:
    assert encode("TEMP?") == b"TEMP?\r\n"
    assert chamber_setpoint(25) == b"TEMP,S25.0\r\n"
    assert encode_power(True) == b"POWER,ON\r\n"
    assert encode_mode("CONSTANT") == b"MODE,CONSTANT\r\n"
    with pytest.raises(ValueError, match="mode"):
        encode_mode("RUN")


def test_chamber_replies() -> None:
    t = decode_temperature(b"23.5,25.0,100.0,-40.0\r\n")
    assert (t.measured_C, t.setpoint_C, t.upper_C, t.lower_C) == (23.5, 25.0, 100.0, -40.0)
    decode_ok(b"TEMP,S25.0\r\n", b"OK:TEMP,S25.0\r\n")
    with pytest.raises(InstrumentProtocolError, match=r"expected .OK:TEMP,S25\.0."):
        decode_ok(b"TEMP,S25.0\r\n", b"OK:TEMP,S26.0\r\n")
    with pytest.raises(ChamberRefused) as info:
        decode_ok(b"TEMP,S25.0\r\n", b"NA:DATA OUT OF RANGE\r\n")
    assert info.value.reply == b"NA:DATA OUT OF RANGE\r\n"
    m = decode_monitor(b"25.1,,CONSTANT,0\r\n")
    assert (m.temperature_C, m.humidity_pct, m.mode, m.alarms) == (25.1, None, "CONSTANT", 0)


@given(st.binary(max_size=120))
def test_chamber_parsers_raise_only_protocol_errors(reply: bytes) -> None:
    for parse in (
        lambda: decode_temperature(reply),
        lambda: decode_monitor(reply),
        lambda: decode_ok(b"POWER,ON\r\n", reply),
    ):
        with contextlib.suppress(InstrumentProtocolError):
            parse()
