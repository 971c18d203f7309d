"""Modbus RTU pieces that need no wire: the simulator's own CRC against pymodbus', the
diagnosis of replies pymodbus did not accept, the Eurotherm programme's registers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from labrig.drivers.capabilities import FurnaceSegment
from labrig.drivers.eurotherm import SegmentLayout, encode_segments, segment_address
from labrig.drivers.modbus import ModbusRtuBus, reply_problem
from labrig.simulators.furnace.modbus_slave import crc_bytes

H = bytes.fromhex


def frame(body: str) -> bytes:
    raw = H(body)
    return raw + crc_bytes(raw)


def test_simulator_crc_matches_the_specification_example() -> None:
    # the specification's own example: read 10 registers from 0 at slave 1
    assert frame("01 03 00 00 00 0a") == H("01 03 00 00 00 0a c5 cd")
    assert frame("01 06 00 02 0f a0") == H("01 06 00 02 0f a0 2d 82")


@given(st.binary(max_size=64))
def test_simulator_crc_agrees_with_pymodbus(data: bytes) -> None:
    """The simulator computes its CRC itself; the driver side's comes from pymodbus."""
    assert crc_bytes(data) == FramerRTU.compute_CRC(data).to_bytes(2, "big")


def test_programme_segments_are_the_controllers_registers() -> None:
    layout = SegmentLayout()
    regs = encode_segments([FurnaceSegment("ramp", 400.0, rate_K_per_s=2 / 60)], layout, 1)
    assert regs[0] == [1, 4000, 20, 0, 0, 0, 0, 0]  # ramp-rate, 400.0 °C, 2.0 °C/min
    assert regs[1][0] == 0  # end segment appended
    assert segment_address(layout, 1) == 8192 + 136 + 8


READ_PV = frame("01 03 00 01 00 01")
WRITE_SP = frame("01 06 00 02 0f a0")


@pytest.mark.parametrize(
    ("request_", "received", "problem"),
    [
        (READ_PV, b"", None),  # silent
        (READ_PV, H("01 03 02 0f"), None),  # truncated: late, not garbled
        (READ_PV, H("01 03 02 0f a0 bd cd"), "bad CRC"),
        (READ_PV, frame("02 03 02 0f a0"), "slave 2"),
        (READ_PV, frame("01 04 02 0f a0"), "function 4"),
        (READ_PV, frame("01 03 04 0f a0 00 00"), "4 data bytes"),
        (READ_PV, H("01 83 02"), None),  # an exception reply on its way
        (READ_PV, H("01 83 02 00 00"), "exception reply"),
        (WRITE_SP, H("01 06 00 02 0f"), None),
        (WRITE_SP, H("01 06 00 02 0f a0 00 00"), "bad CRC"),
        (WRITE_SP, H("ff"), "slave 255"),
    ],
)
def test_reply_problems_are_named(request_: bytes, received: bytes, problem: str | None) -> None:
    found = reply_problem(request_, received)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@given(st.binary(max_size=300), st.sampled_from([1, 2, 16, 125]))
def test_any_bytes_are_either_a_named_problem_or_a_valid_beginning(
    received: bytes, count: int
) -> None:
    request_ = frame(f"01 03 00 01 00 {count:02x}")
    problem = reply_problem(request_, received)
    if problem is None:  # then it can still become the reply: same slave, function, size
        full = 5 + 2 * count
        assert len(received) < full or received[1] == 0x83
        assert received[:1] in (b"", b"\x01")
        assert received[1:2] in (b"", b"\x03", b"\x83")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/dev/ttyUSB0", "expected serial"),
        ("tcp://127.0.0.1", "tcp://host:port"),
        ("serial:///dev/ttyUSB0?baud=9600", "unknown serial setting"),
        ("serial:///dev/ttyUSB0?baudrate=fast", "not a number"),
        ("serial:///dev/ttyUSB0?stopbits=1.5", "1 or 2 stop bits"),
        ("visa://TCPIP::1.2.3.4::502::SOCKET", "expected serial"),
    ],
)
def test_bad_bus_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModbusRtuBus(url)


def test_bad_bus_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        ModbusRtuBus("tcp://127.0.0.1:502", timeout_s=0.0)
    with pytest.raises(ValueError, match="retries"):
        ModbusRtuBus("tcp://127.0.0.1:502", retries=-1)
