"""2450 SCPI: exact command text, reply tables, the simulator's SCPI parser, fuzzing."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.capabilities import InstrumentProtocolError
from labrig.drivers.keithley import codec
from labrig.simulators.engine import ChannelEngine
from labrig.simulators.keithley import Smu2450
from labrig.simulators.keithley.scpi import Pattern, match


def test_command_text_is_exact() -> None:
    assert codec.source_level(-0.00168) == ":SOUR:CURR:LEV -0.00168"
    assert codec.source_level(2.5e-07) == ":SOUR:CURR:LEV 2.5E-07"
    assert codec.voltage_limit(3.9) == ":SOUR:CURR:VLIM 3.9"
    assert codec.output(True) == ":OUTP ON" and codec.output(False) == ":OUTP OFF"
    assert codec.trigger_simple_loop(10, 0.5) == 'TRIG:LOAD "SimpleLoop",10,0.5,"defbuffer1"'
    assert codec.trace_data(10) == 'TRAC:DATA? 1,10,"defbuffer1",READ,REL'
    assert codec.SETUP == ("*CLS", ":SOUR:FUNC CURR", ':SENS:FUNC "VOLT"', ":SOUR:CURR:LEV 0")
    with pytest.raises(ValueError):
        codec.voltage_limit(0.0)
    with pytest.raises(ValueError):
        codec.source_level(float("nan"))
    with pytest.raises(ValueError):
        codec.trigger_simple_loop(0, 1.0)


@pytest.mark.parametrize(
    ("reply", "value"),
    [(b"+3.527841E+00\n", 3.527841), (b"-1.680000E-03\n", -1.68e-3), (b"0\n", 0.0)],
)
def test_numbers(reply: bytes, value: float) -> None:
    assert codec.decode_number(reply, ":READ?") == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(
    ("reply", "match_"),
    [(b"9.9E37\n", "overflow"), (b"nan\n", "finite"), (b"volts\n", "not a number"),
     (b"\xff\n", "ASCII")],
)  # fmt: skip
def test_bad_numbers_name_command_and_reply(reply: bytes, match_: str) -> None:
    with pytest.raises(InstrumentProtocolError, match=match_) as info:
        codec.decode_number(reply, ":READ?")
    assert info.value.command == ":READ?" and info.value.reply


def test_trace_identity_and_errors() -> None:
    v, t = codec.decode_trace(b"+3.1E+00,+0.0E+00,+3.2E+00,+1.0E+00\n", "TRAC", 2)
    assert v == [3.1, 3.2] and t == [0.0, 1.0]
    with pytest.raises(InstrumentProtocolError, match="expected 4"):
        codec.decode_trace(b"1,2,3\n", "TRAC", 2)
    with pytest.raises(InstrumentProtocolError, match="backwards"):
        codec.decode_trace(b"1,2,1,1\n", "TRAC", 2)
    assert codec.decode_idn(b"KEITHLEY INSTRUMENTS,MODEL 2450,04511234,1.7.12b\n")[1] == (
        "MODEL 2450"
    )
    with pytest.raises(InstrumentProtocolError, match="2450"):
        codec.decode_idn(b"KEITHLEY INSTRUMENTS,MODEL 2400,1,2\n")
    assert codec.decode_error(b'0,"No error"\n') == (0, "No error")
    assert codec.decode_error(b'-113,"Undefined header"\n') == (-113, "Undefined header")


@pytest.mark.parametrize(
    ("pattern", "header", "ok"),
    [
        ("SOURce:CURRent[:LEVel]", "SOUR:CURR", True),
        ("SOURce:CURRent[:LEVel]", "source:current:level", True),
        ("SOURce:CURRent[:LEVel]", "SOUR1:CURR:LEV", True),
        ("SOURce:CURRent[:LEVel]", "SOURC:CURR", False),
        ("SOURce:CURRent:VLIMit[:LEVel]", "sour:curr:vlim", True),
        ("SYSTem:ERRor[:NEXT]", "SYST:ERR:NEXT", True),
    ],
)
def test_scpi_header_forms(pattern: str, header: str, ok: bool) -> None:
    assert match(Pattern.parse(pattern), tuple(header.split(":"))) is ok


def test_simulator_compound_lines_relative_headers_and_error_queue() -> None:
    async def main() -> None:
        smu = Smu2450(ChannelEngine(None, noise=0.0), now=lambda: 0.0)
        assert await smu.execute(":sour:curr:lev 0.001;VLIM 4.1;:SOUR:CURR:VLIM?") == (
            "+4.100000E+00"
        )
        assert smu.level_A == 0.001
        assert await smu.execute("*IDN?;:OUTP?") == (
            "KEITHLEY INSTRUMENTS,MODEL 2450,04511234,1.7.12b;0"
        )
        assert await smu.execute(":SOUR:CURR:LEV 7") is None  # out of range
        assert await smu.execute(":BOGUS 1;:SOUR:FUNC VOLT") is None
        errs = [await smu.execute("SYST:ERR?") for _ in range(4)]
        assert errs == [
            '-222,"Data out of range"',
            '-113,"Undefined header"',
            '-224,"Illegal parameter value"',
            '0,"No error"',
        ]

    asyncio.run(main())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=5))
def test_fuzzed_replies_raise_only_protocol_errors(reply: bytes, n: int) -> None:
    calls = (
        lambda: codec.decode_number(reply, ":READ?"),
        lambda: codec.decode_bool(reply, "TRIP?"),
        lambda: codec.decode_trace(reply, "TRAC", n),
        lambda: codec.decode_idn(reply),
        lambda: codec.decode_error(reply),
    )
    for call in calls:
        with contextlib.suppress(InstrumentProtocolError):
            call()


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(list("0123456789.,+-Ee nainf\"'\n")), max_size=80),
       st.integers(min_value=1, max_value=4))  # fmt: skip
def test_number_shaped_fuzz_raises_only_protocol_errors(text: str, n: int) -> None:
    for call in (lambda: codec.decode_number(text.encode(), "Q"),
                 lambda: codec.decode_trace(text.encode(), "Q", n),
                 lambda: codec.decode_error(text.encode())):  # fmt: skip
        with contextlib.suppress(InstrumentProtocolError):
            call()
