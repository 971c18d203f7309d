"""Byte-exact Modbus RTU frames and the reply decoder's failure modes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from labrig.drivers.capabilities import FurnaceSegment, InstrumentProtocolError
from labrig.drivers.eurotherm import SegmentLayout, encode_segments, segment_address
from labrig.drivers.modbus_rtu import (
    ModbusException,
    ModbusProtocolError,
    crc16,
    decode_read_reply,
    decode_write_reply,
    encode_read_holding,
    encode_write_multiple,
    encode_write_single,
    expected_reply_length,
    float_to_registers,
    registers_to_float,
    with_crc,
)

H = bytes.fromhex


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        # the specification's own example: read 10 registers from 0 at slave 1
        (encode_read_holding(1, 0, 10), "01 03 00 00 00 0a c5 cd"),
        (encode_read_holding(1, 1, 1), "01 03 00 01 00 01 d5 ca"),  # PV
        (encode_write_single(1, 2, 4000), "01 06 00 02 0f a0 2d 82"),  # SP 400.0
        (encode_read_holding(1, 0x8002, 2), "01 03 80 02 00 02 4c 0b"),  # PV as float
    ],
)
def test_request_frames_are_byte_exact(frame: bytes, wire: str) -> None:
    assert frame == H(wire)


def test_programme_segment_write_is_byte_exact() -> None:
    layout = SegmentLayout()
    regs = encode_segments([FurnaceSegment("ramp", 400.0, rate_K_per_s=2 / 60)], layout, 1)
    assert regs[0] == [1, 4000, 20, 0, 0, 0, 0, 0]  # ramp-rate, 400.0 °C, 2.0 °C/min
    assert regs[1][0] == 0  # end segment appended
    assert segment_address(layout, 1) == 8192 + 136 + 8
    frame = encode_write_multiple(1, segment_address(layout, 1), regs[0])
    assert frame == H("01 10 20 90 00 08 10 00 01 0f a0 00 14 00 00 00 00 00 00 00 00 00 00 ec bc")


@given(st.binary(max_size=64))
def test_crc_agrees_with_pymodbus(data: bytes) -> None:
    assert crc16(data).to_bytes(2, "little") == FramerRTU.compute_CRC(data).to_bytes(2, "big")


def test_read_reply_decodes_registers() -> None:
    req = encode_read_holding(1, 1, 1)
    assert decode_read_reply(req, H("01 03 02 0f a0 bd cc")) == [4000]
    assert expected_reply_length(req, H("01 03 02")) == 7


def test_exception_reply_names_request_and_reply() -> None:
    req = encode_read_holding(1, 2, 1)
    reply = with_crc(H("01 83 02"))
    assert reply == H("01 83 02 c0 f1")
    with pytest.raises(ModbusException) as info:
        decode_read_reply(req, reply)
    assert info.value.code == 2
    assert info.value.command == req and info.value.reply == reply
    assert "illegal data address" in str(info.value) and "01" in str(info.value)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (H("01 03 02 0f a0 bd cd"), "bad CRC"),
        (with_crc(H("02 03 02 0f a0")), "slave 2"),
        (H("01 03 02"), "truncated"),
        (with_crc(H("01 04 02 0f a0")), "function 4"),
        (with_crc(H("01 03 04 0f a0 00 00")), "data bytes"),
    ],
)
def test_bad_replies_raise_protocol_errors(reply: bytes, message: str) -> None:
    req = encode_read_holding(1, 1, 1)
    with pytest.raises(ModbusProtocolError, match=message) as info:
        decode_read_reply(req, reply)
    assert info.value.command == req and info.value.reply == reply


def test_write_ack_must_echo() -> None:
    req = encode_write_single(1, 2, 4000)
    decode_write_reply(req, req)  # function 6 echoes the request
    with pytest.raises(ModbusProtocolError, match="echo"):
        decode_write_reply(req, encode_write_single(1, 2, 4001))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="slave address"):
        encode_read_holding(0, 1, 1)
    with pytest.raises(ValueError, match="16 bits"):
        encode_write_single(1, 1, 70000)
    with pytest.raises(ValueError, match=r"1\.\.125"):
        encode_read_holding(1, 1, 126)


def test_float_registers_round_trip() -> None:
    assert registers_to_float(*float_to_registers(412.25)) == 412.25
    assert float_to_registers(1.0) == (0x3F80, 0)


@given(st.binary(max_size=300), st.sampled_from([1, 3, 16, 125]))
def test_arbitrary_reply_bytes_raise_only_protocol_errors(reply: bytes, count: int) -> None:
    req = encode_read_holding(1, 1, count)
    try:
        values = decode_read_reply(req, reply)
    except InstrumentProtocolError:
        return
    assert len(values) == count


@given(st.binary(max_size=40))
def test_arbitrary_write_ack_bytes_raise_only_protocol_errors(reply: bytes) -> None:
    req = encode_write_multiple(1, 8336, [1, 2, 3])
    try:
        decode_write_reply(req, reply)
    except InstrumentProtocolError:
        return
    assert reply[:6] == req[:6]
