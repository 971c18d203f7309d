"""MacNet codec: exact bytes out, exact values in, only our own errors on bad input."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError
from labrig.drivers.maccor.codec import (
    MacNetError,
    decode_reading,
    decode_reply,
    decode_safety_limits,
    encode_request,
    expect_ok,
)
from labrig.drivers.maccor.records import HEADER, decode_data, encode_data_row

CMD = b"cmd"


def test_encode_status_request_exact_bytes() -> None:
    assert encode_request(4, 7, 3, 1987) == (
        b'{"jsonrpc":"2.0","method":"MacNet","params":{"FClass":4,"FNum":7,"Chan":3},"id":1987}'
    )


def test_encode_limits_request_keeps_order_and_no_terminator() -> None:
    out = encode_request(6, 10, 0, 5, {"VSafeMax": 4.5, "VSafeMin": 2.5})
    assert out == (
        b'{"jsonrpc":"2.0","method":"MacNet","params":{"FClass":6,"FNum":10,"Chan":0,'
        b'"VSafeMax":4.5,"VSafeMin":2.5},"id":5}'
    )
    assert not out.endswith(b"\r\n")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_encode_refuses_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_request(6, 10, 0, 1, {"VSafeMax": bad})


def _reply(result: dict[str, object], rid: object = 7) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "result": result, "id": rid}).encode() + b"\r\n"


READING = {
    "FClass": 4,
    "FNum": 7,
    "Chan": 2,
    "RF1": 1,
    "RF2": 0,
    "Stat": 2,
    "LastRecNum": 42,
    "Cycle": 0,
    "Step": 1,
    "TestTime": 212.5,
    "StepTime": 209.25,
    "Capacity": 0.001,
    "Energy": 0.0035,
    "Current": 0.0016,
    "Voltage": 3.5,
    "TesterTime": "2024-01-01T00:00:00",
}


def test_decode_reading_exact() -> None:
    res = decode_reply(_reply(READING), command=CMD, fclass=4, fnum=7, chan=2, request_id=7)
    r = decode_reading(res, CMD)
    assert (r.stat, r.rf1, r.last_rec, r.step) == (2, 1, 42, 1)
    assert (r.test_time_s, r.voltage_V, r.current_A) == (212.5, 3.5, 0.0016)


def test_error_reply_becomes_macnet_error() -> None:
    frame = b'{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params"},"id":7}\r\n'
    with pytest.raises(MacNetError) as info:
        decode_reply(frame, command=CMD, fclass=4, fnum=7, chan=2, request_id=7)
    assert info.value.macnet_message == "Invalid params"
    assert info.value.code == -32602


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b'{"jsonrpc":"2.0","result":{"FClass":4,"FNum":7,"Chan":2},"id":7}', "does not end"),
        (b"nonsense\r\n", "not JSON"),
        (b'{"jsonrpc":"2.0","result":{"FClass":4,"FNum":8,"Chan":2},"id":7}\r\n', "FNum"),
        (b'{"jsonrpc":"2.0","result":{"FClass":4,"FNum":7,"Chan":1},"id":7}\r\n', "Chan"),
        (b'{"jsonrpc":"2.0","result":{"FClass":4,"FNum":7,"Chan":2},"id":6}\r\n', "id"),
        (b'{"jsonrpc":"2.0","result":[],"id":7}\r\n', "result"),
        (b'{"jsonrpc":"2.0","result":{"FClass":4,"FNum":7,"Chan":2,"x":NaN},"id":7}\r\n', "JSON"),
    ],
)
def test_reply_outside_protocol_names_command_and_reply(frame: bytes, why: str) -> None:
    with pytest.raises(InstrumentProtocolError, match=why) as info:
        decode_reply(frame, command=CMD, fclass=4, fnum=7, chan=2, request_id=7)
    assert info.value.command == CMD
    assert info.value.reply


def test_reading_with_wrong_type_is_protocol_error() -> None:
    with pytest.raises(InstrumentProtocolError, match="Voltage"):
        decode_reading({**READING, "Voltage": "3.5"}, CMD)


def test_safety_limits_and_result() -> None:
    lim = decode_safety_limits(
        {
            "VSafeMax": 4.5,
            "VSafeMin": 2.5,
            "ISafeChg": 4.3,
            "ISafeDis": 2.5,
            "PBatSafeChg": 50,
            "PBatSafeDis": 50,
        },
        CMD,
    )
    assert (lim.v_max_V, lim.i_dis_A, lim.p_chg_W) == (4.5, 2.5, 50.0)
    expect_ok({"Result": "OK"}, CMD)
    with pytest.raises(InstrumentError, match="refused"):
        expect_ok({"Result": "Channel busy"}, CMD)


def test_data_chunk_exact_values() -> None:
    text = (
        HEADER
        + "\r\n"
        + encode_data_row(1, 0, 1, 10.0, 10.0, 1e-5, 3.5e-5, 0.0016, 3.51, "C", 0, 25.0)
        + "\r\n"
        + encode_data_row(2, 0, 2, 20.0, 5.0, 2e-6, 7e-6, 0.0016, 3.4, "D", 133, 25.0)
        + "\r\n"
    )
    c = decode_data(text)
    assert c.rec.tolist() == [1, 2]
    assert c.current_A.tolist() == [0.0016, -0.0016]
    assert c.step_charge_Ah.tolist() == [1e-5, -2e-6]
    assert c.es.tolist() == [0, 133]
    assert np.array_equal(c.voltage_V, [3.51, 3.4])


@pytest.mark.parametrize(
    "body",
    [
        "1\t0\t1\t10\t10\t0\t0\t0.1\t3.5\tX\t0\t25",  # unknown State
        "1\t0\t1\t10\t10\t0\t0\t0.1\tnan\tC\t0\t25",  # NaN voltage
        "1\t0\t1\t10\t10\t0\t0\t-0.1\t3.5\tC\t0\t25",  # negative magnitude
        "1\t0\t1\t10",  # short row
        "2\t0\t1\t10\t10\t0\t0\t0.1\t3.5\tC\t0\t25\r\n1\t0\t1\t10\t10\t0\t0\t0.1\t3.5\tC\t0\t25",
    ],
)
def test_bad_data_rows_are_protocol_errors(body: str) -> None:
    with pytest.raises(InstrumentProtocolError):
        decode_data(HEADER + "\r\n" + body + "\r\n")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzzed_reply_raises_only_our_errors(frame: bytes) -> None:
    try:
        res = decode_reply(frame, command=CMD, fclass=4, fnum=7, chan=2, request_id=7)
        decode_reading(res, CMD)
    except InstrumentError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(list(READING)), json_values, max_size=16))
def test_fuzzed_structured_reply_raises_only_our_errors(fields: dict[str, object]) -> None:
    frame = _reply({**READING, **fields})
    try:
        res = decode_reply(frame, command=CMD, fclass=4, fnum=7, chan=2, request_id=7)
        decode_reading(res, CMD)
    except InstrumentError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400))
def test_fuzzed_data_text_raises_only_our_errors(text: str) -> None:
    for candidate in (text, HEADER + "\r\n" + text):
        with contextlib.suppress(InstrumentProtocolError):
            decode_data(candidate)


_VALUES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-5, 5), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    ids=st.tuples(*(st.integers(0, 2**40) for _ in range(4))),
    params=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("FClass", "FNum", "Chan")),
        _VALUES,
        max_size=5,
    ),
)
def test_encode_request_is_byte_for_byte_what_json_dumps_writes(
    ids: tuple[int, int, int, int], params: dict[str, object]
) -> None:
    fclass, fnum, chan, rid = ids
    body = {"FClass": fclass, "FNum": fnum, "Chan": chan, **params}
    msg = {"jsonrpc": "2.0", "method": "MacNet", "params": body, "id": rid}
    want = json.dumps(msg, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    assert encode_request(fclass, fnum, chan, rid, params) == want.encode()


def test_encode_refuses_a_parameter_the_function_sets() -> None:
    with pytest.raises(ValueError, match="Chan"):
        encode_request(1, 7, 0, 1, {"Chan": 3})
