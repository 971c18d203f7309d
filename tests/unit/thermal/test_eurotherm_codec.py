"""Eurotherm value scaling and programme encoding (pure)."""

from __future__ import annotations

import pytest

from labrig.drivers.capabilities import FurnaceSegment, InstrumentError, InstrumentProtocolError
from labrig.drivers.eurotherm import (
    SEGMENT_TYPES,
    SegmentLayout,
    decode_scaled,
    decode_status,
    encode_scaled,
    encode_segments,
    float_address,
    settings_2400,
    settings_3200,
)


@pytest.mark.parametrize(
    ("value", "decimals", "raw"),
    [(24.2, 1, 242), (400.0, 1, 4000), (-5.5, 1, 0x10000 - 55), (1200, 0, 1200), (3.25, 2, 325)],
)
def test_scaling_by_decimal_places(value: float, decimals: int, raw: int) -> None:
    assert encode_scaled(value, decimals) == raw
    assert decode_scaled(raw, decimals) == pytest.approx(value)


def test_scaling_refuses_what_does_not_fit() -> None:
    with pytest.raises(InstrumentError, match="16-bit"):
        encode_scaled(4000.0, 1)
    with pytest.raises(InstrumentError, match="finite"):
        encode_scaled(float("nan"), 1)


def test_float_area_address() -> None:
    assert float_address(1) == 0x8002
    assert float_address(35) == 0x8000 + 70


def test_anneal_programme_encoding() -> None:
    layout = SegmentLayout()
    regs = encode_segments(
        [
            FurnaceSegment("ramp", 400.0, rate_K_per_s=2 / 60),
            FurnaceSegment("dwell", duration_s=3600),
            FurnaceSegment("ramp", 25.0, duration_s=7200),
            FurnaceSegment("step", 30.0),
            FurnaceSegment("end"),
        ],
        layout,
        1,
    )
    assert [r[0] for r in regs] == [
        SEGMENT_TYPES[k] for k in ("ramp_rate", "dwell", "ramp_time", "step", "end")
    ]
    assert regs[1][3] == 60  # one hour in minutes
    assert regs[2][1] == 250 and regs[2][3] == 120
    assert regs[3][1] == 300


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ([FurnaceSegment("ramp", 400.0)], "rate_K_per_s or duration_s"),
        ([FurnaceSegment("ramp", 400.0, rate_K_per_s=1e-5)], "resolution"),
        ([FurnaceSegment("dwell")], "needs duration_s"),
        ([FurnaceSegment("dwell", duration_s=1e9)], "not representable"),
        ([FurnaceSegment("end"), FurnaceSegment("step", 20.0)], "last segment"),
        ([FurnaceSegment("step", 20.0)] * 16, "holds 16"),
    ],
)
def test_programme_errors_name_the_segment(segments: list[FurnaceSegment], message: str) -> None:
    with pytest.raises(InstrumentError, match=message):
        encode_segments(segments, SegmentLayout(), 1)


def test_series_status_codes_differ() -> None:
    assert decode_status(16, settings_2400()) == "complete"
    assert decode_status(3, settings_3200()) == "complete"
    assert decode_status(1, settings_2400()) == "reset"
    assert decode_status(1, settings_3200()) == "running"
    with pytest.raises(InstrumentProtocolError, match="unknown programme status 5"):
        decode_status(5, settings_2400())
