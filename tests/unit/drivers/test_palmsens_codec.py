"""MethodSCRIPT codec: byte-exact scripts, package tables, decoder grammar, fuzzing."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.capabilities import InstrumentProtocolError
from labrig.drivers.palmsens.codec import (
    Echo,
    EisSegment,
    LoopEnd,
    LoopStart,
    Package,
    ScriptDecoder,
    ScriptEnd,
    ScriptErrorLine,
    Variable,
    cp_script,
    decode_package,
    decode_value,
    eis_script,
    eis_segments,
    format_number,
    ocp_script,
    parse_firmware,
    parse_serial,
)
from labrig.simulators.palmsens.script import encode_value, parse_number


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (0.1, "100m"),
        (7e6, "7M"),
        (200e3, "200k"),
        (1234.5, "1234500m"),
        (-0.01, "-10m"),
        (3.6512, "3651200u"),
        (1e-9, "1n"),
        (42, "42"),
        (0.0123456789, "12345679n"),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text
    assert math.isclose(parse_number(text), value, rel_tol=1e-7, abs_tol=1e-30)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_format_number_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        format_number(bad)


def test_eis_script_is_byte_exact() -> None:
    seg = eis_segments([1e5, 1e4, 1e3, 100.0, 10.0])
    assert seg == [EisSegment(1e5, 10.0, 5)]
    text = eis_script(seg, amplitude_V=0.01, dc_V=3.65)
    assert text == (
        "e\n"
        "var f\nvar r\nvar j\n"
        "set_pgstat_chan 0\nset_pgstat_mode 3\n"
        "set_autoranging ba 1n 10m\n"
        "set_e 3650m\ncell_on\n"
        "meas_loop_eis f r j 10m 100k 10 5 3650m\n"
        "  pck_start\n    pck_add f\n    pck_add r\n    pck_add j\n  pck_end\n"
        "endloop\n"
        "on_finished:\n  cell_off\n"
        "\n"
    )


def test_ocp_and_cp_scripts_are_byte_exact() -> None:
    assert ocp_script(0.1, 2.0) == (
        "e\nvar p\nset_pgstat_chan 0\nset_pgstat_mode 2\ncell_off\n"
        "meas_loop_ocp p 100m 2\n  pck_start\n    pck_add p\n  pck_end\nendloop\n"
        "on_finished:\n  cell_off\n\n"
    )
    assert cp_script(-0.0015, 0.5, 60.0) == (
        "e\nvar p\nvar c\nset_pgstat_chan 0\nset_pgstat_mode 2\nset_range ba 10m\ncell_on\n"
        "meas_loop_cp p c -1500u 500m 60\n"
        "  pck_start\n    pck_add p\n    pck_add c\n  pck_end\nendloop\n"
        "on_finished:\n  cell_off\n\n"
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: cp_script(0.5, 1, 10), "current range"),
        (lambda: ocp_script(1.0, 0.5), "duration"),
        (lambda: eis_segments([]), "at least one"),
        (lambda: eis_segments([10.0, -1.0]), "> 0"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_irregular_frequencies_become_several_sweeps() -> None:
    assert eis_segments([1000.0, 100.0, 10.0, 5.0, 5.0]) == [
        EisSegment(1000.0, 10.0, 3),
        EisSegment(5.0, 5.0, 1),
        EisSegment(5.0, 5.0, 1),
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("8000000 ", 0.0),
        ("8000001 ", 1.0),
        ("7FFFFFFm", -1e-3),
        ("80003E8m", 1.0),
        ("8000064k", 100e3),
        ("7F0BDF9u", (0x7F0BDF9 - 2**27) * 1e-6),
        ("8000005M", 5e6),
        ("800000Ap", 10e-12),
        ("800000Bi", 11.0),
        ("FFFFFFFa", (2**27 - 1) * 1e-18),
        ("0000000E", -(2**27) * 1e18),
    ],
)
def test_decode_value_table(field: str, value: float) -> None:
    got, _ = decode_value(field)
    assert math.isclose(got, value, rel_tol=1e-12, abs_tol=0.0)


def test_decode_package_with_metadata_and_nan() -> None:
    pkg = decode_package("Pda7F0BDF9u;ba7678CD7p,12,20F,40;cc     nan")
    assert [v.type for v in pkg.variables] == ["da", "ba", "cc"]
    assert pkg.variables[1] == Variable("ba", (0x7678CD7 - 2**27) * 1e-12, 2, 0x0F)
    assert pkg.variables[1].overload
    assert math.isnan(pkg.get("cc"))


@pytest.mark.parametrize(
    "line",
    ["P", "Pda123", "PDA8000000 ", "Pda800000G ", "Pda8000000x", "Pda8000000 ,zz", "Pab8000000 ;"],
)
def test_malformed_packages_are_protocol_errors(line: str) -> None:
    with pytest.raises(InstrumentProtocolError, match="package"):
        decode_package(line)


def test_decoder_stream_split_anywhere() -> None:
    stream = b"e\nM000D\nPdc8000064k;cc8001388m;cdFFFF000u,10\n*\nL\nPab80003E8m\n+\n\x11\r\n"
    for cut in range(1, len(stream)):
        dec = ScriptDecoder()
        events = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert events[0] == Echo("e")
        assert events[1] == LoopStart("M", 0x000D)
        assert isinstance(events[2], Package)
        assert events[2].get("dc") == 100e3 and events[2].get("cc") == 5.0
        assert events[3] == LoopEnd("M")
        assert events[4:7] == [LoopStart("L", None), events[5], LoopEnd("L")]
        assert events[-1] == ScriptEnd() and dec.done


def test_decoder_reports_errors_with_line_and_column() -> None:
    dec = ScriptDecoder()
    ev = dec.feed(b"e!4001: Line 3, Col 7\n")
    assert ev == [ScriptErrorLine(0x4001, "Line 3, Col 7", 3, 7, "e!4001: Line 3, Col 7")]
    ev = ScriptDecoder().feed(b"e\nM000B\n!0032: Line 5\n")
    assert isinstance(ev[-1], ScriptErrorLine) and ev[-1].line == 5 and ev[-1].column is None


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (b"e\nM000D\n+\n", "does not close"),
        (b"e\n*\n", "does not close"),
        (b"e\nM000D\n\n", "inside an open"),
        (b"hello world\n", "unexpected line"),
        (b"e\n\xff\xfe\n", "ASCII"),
        (b"x" * 5000, "longer than"),
    ],
)
def test_decoder_grammar_violations(stream: bytes, match: str) -> None:
    with pytest.raises(InstrumentProtocolError, match=match) as info:
        ScriptDecoder().feed(stream)
    assert info.value.reply


def test_identity_replies() -> None:
    assert parse_firmware(b"tes4_hr1100#Jan 28 2022\n", b"R*\n") == "es4_hr1100#Jan 28 2022 R"
    assert parse_serial(b"iES4SIM0001\n") == "ES4SIM0001"
    with pytest.raises(InstrumentProtocolError, match="firmware"):
        parse_firmware(b"x\n", b"R*\n")
    with pytest.raises(InstrumentProtocolError, match="serial"):
        parse_serial(b"i\n")


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e24, max_value=1e24))
def test_simulator_encoding_round_trips_through_the_driver(x: float) -> None:
    got, _ = decode_value(encode_value(x))
    # 7 hex digits and a 1000x prefix step keep at least 1 part in 134 218
    assert math.isclose(got, x, rel_tol=1e-5, abs_tol=1e-18)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzzed_output_raises_only_protocol_errors(chunks: list[bytes]) -> None:
    dec = ScriptDecoder(max_line=256)
    try:
        for c in chunks:
            dec.feed(c)
    except InstrumentProtocolError:
        pass


_ALPHABET = st.sampled_from(list("P;,0123456789ABCDEFabcdefmunpkMGi *+-LMCe!:\n \r"))


@settings(max_examples=400, deadline=None)
@given(st.text(_ALPHABET, max_size=200))
def test_grammar_shaped_fuzz_raises_only_protocol_errors(text: str) -> None:
    calls = (
        lambda: ScriptDecoder().feed(text.encode()),
        lambda: decode_package("P" + text),
        lambda: parse_serial(text.encode()),
        lambda: parse_firmware(b"t", text.encode()),
    )
    for call in calls:
        with contextlib.suppress(InstrumentProtocolError):
            call()
