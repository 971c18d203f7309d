"""Eurotherm 2400 / 3200 register map and value codec (pure, no I/O).

Facts from the controllers' communications manuals (Eurotherm 2400 series, Modbus).
What two sources disagree on or what depends on the unit's configuration is a field of
:class:`EurothermSettings`, never a constant: decimal places, programme status codes,
rate units, the programmer's segment layout, the sensor-break value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from labrig.drivers.capabilities import FurnaceSegment, InstrumentError, InstrumentProtocolError

__all__ = [
    "FLOAT_BASE",
    "REG",
    "SEGMENT_TYPES",
    "EurothermSettings",
    "SegmentLayout",
    "decode_scaled",
    "decode_status",
    "encode_scaled",
    "encode_segments",
    "float_address",
    "segment_address",
    "settings_2400",
    "settings_3200",
]

FLOAT_BASE = 0x8000

# Register numbers (integer area).
REG = {
    "pv": 1,
    "target_sp": 2,
    "output": 3,
    "working_sp": 5,
    "program_status": 23,
    "sp1": 24,
    "sp2": 25,
    "sp_rate_limit": 35,
    "auto_manual": 273,
    "ramp_units": 531,  # 3200 only: 0 per minute, 1 per hour, 2 per second
}

SEGMENT_TYPES = {"end": 0, "ramp_rate": 1, "ramp_time": 2, "dwell": 3, "step": 4, "call": 5}

RAMP_UNIT_SECONDS = {0: 60.0, 1: 3600.0, 2: 1.0}


@dataclass(frozen=True, slots=True)
class SegmentLayout:
    """Where a 2400 programme lives: programme p at base + stride*p, segment s at +8*s.

    Offsets inside a segment's eight registers are a setting (check against the unit's
    manual). Rates are in temperature units per ``rate_unit_s`` at the display decimals;
    durations in whole ``time_unit_s``.
    """

    base: int = 8192
    program_stride: int = 136
    segment_stride: int = 8
    type_offset: int = 0
    target_offset: int = 1
    rate_offset: int = 2
    duration_offset: int = 3
    max_segments: int = 16
    rate_unit_s: float = 60.0
    time_unit_s: float = 60.0
    program_number: int = 1
    program_select_register: int | None = 22


@dataclass(frozen=True, slots=True)
class EurothermSettings:
    """How one controller is configured. Use :func:`settings_2400` / :func:`settings_3200`."""

    series: Literal["2400", "3200"]
    decimals: int = 1
    output_decimals: int = 1
    use_float_registers: bool = False
    status_codes: Mapping[int, str] = field(default_factory=dict)
    status_commands: Mapping[str, int] = field(default_factory=dict)
    rate_unit_s: float | None = 60.0  # None: read register 531 (3200)
    program: SegmentLayout | None = None
    sensor_break_raw: int = 0x8000
    manual_value: int = 1
    auto_value: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.decimals <= 3:
            raise ValueError(f"decimals must be 0..3, got {self.decimals}")


def settings_2400(**overrides: Any) -> EurothermSettings:
    """2400 series defaults: programmer present, status 1 reset 2 run 4 hold 8 holdback
    16 complete. ``overrides``: other values of :class:`EurothermSettings` fields."""
    base = EurothermSettings(
        series="2400",
        status_codes={1: "reset", 2: "running", 4: "hold", 8: "holdback", 16: "complete"},
        status_commands={"reset": 1, "run": 2, "hold": 4},
        program=SegmentLayout(),
    )
    return replace(base, **overrides)


def settings_3200(**overrides: Any) -> EurothermSettings:
    """3200 series defaults: 0 reset 1 run 2 hold 3 end; rate units from register 531;
    no 2400-style programmer layout (load_program is refused unless one is given).
    ``overrides``: other values of :class:`EurothermSettings` fields."""
    base = EurothermSettings(
        series="3200",
        status_codes={0: "reset", 1: "running", 2: "hold", 3: "complete"},
        status_commands={"reset": 0, "run": 1, "hold": 2},
        rate_unit_s=None,
        program=None,
    )
    return replace(base, **overrides)


def float_address(register: int) -> int:
    """Full-resolution IEEE float of ``register`` (two registers, high word first)."""
    return FLOAT_BASE + 2 * register


def encode_scaled(value: float, decimals: int, what: str = "value") -> int:
    """A float as the signed 16-bit integer the display resolution gives (24.2 -> 242)."""
    if not math.isfinite(value):
        raise InstrumentError(f"{what} must be finite, got {value}")
    raw = round(value * float(10**decimals))
    if not -32767 <= raw <= 32767:
        raise InstrumentError(
            f"{what} {value} does not fit a 16-bit register at {decimals} decimal places"
        )
    return raw & 0xFFFF


def decode_scaled(raw: int, decimals: int) -> float:
    """Inverse of :func:`encode_scaled` (register values are signed)."""
    signed = raw - 0x10000 if raw & 0x8000 else raw
    return signed / float(10**decimals)


def segment_address(layout: SegmentLayout, segment: int) -> int:
    """First register of ``segment`` (1-based) of the configured programme."""
    return (
        layout.base
        + layout.program_stride * layout.program_number
        + (layout.segment_stride * segment)
    )


def encode_segments(
    segments: Sequence[FurnaceSegment], layout: SegmentLayout, decimals: int
) -> list[list[int]]:
    """Each segment as its eight registers; an ``end`` segment is appended if missing.

    Raises :class:`InstrumentError` naming the segment for anything the controller cannot
    hold (too many segments, rates below the display resolution, durations out of range).
    """
    segs = list(segments)
    if not segs or segs[-1].kind != "end":
        segs.append(FurnaceSegment(kind="end"))
    if len(segs) > layout.max_segments:
        raise InstrumentError(
            f"programme has {len(segs)} segments (with its end); the controller holds"
            f" {layout.max_segments}"
        )
    out: list[list[int]] = []
    for i, seg in enumerate(segs, start=1):
        regs = [0] * layout.segment_stride
        label = f"segment {i} ({seg.kind})"
        if seg.kind == "ramp":
            if seg.target_C is None:
                raise InstrumentError(f"{label}: a ramp needs target_C")
            regs[layout.target_offset] = encode_scaled(seg.target_C, decimals, label)
            if seg.rate_K_per_s is not None:
                rate = seg.rate_K_per_s * layout.rate_unit_s
                raw = encode_scaled(rate, decimals, f"{label} rate")
                if raw == 0 or rate <= 0:
                    raise InstrumentError(
                        f"{label}: rate {seg.rate_K_per_s} K/s is below the controller's"
                        " resolution or not positive"
                    )
                regs[layout.type_offset] = SEGMENT_TYPES["ramp_rate"]
                regs[layout.rate_offset] = raw
            elif seg.duration_s is not None:
                regs[layout.type_offset] = SEGMENT_TYPES["ramp_time"]
                regs[layout.duration_offset] = _duration(seg.duration_s, layout, label)
            else:
                raise InstrumentError(f"{label}: a ramp needs rate_K_per_s or duration_s")
        elif seg.kind == "dwell":
            if seg.duration_s is None:
                raise InstrumentError(f"{label}: a dwell needs duration_s")
            regs[layout.type_offset] = SEGMENT_TYPES["dwell"]
            regs[layout.duration_offset] = _duration(seg.duration_s, layout, label)
        elif seg.kind == "step":
            if seg.target_C is None:
                raise InstrumentError(f"{label}: a step needs target_C")
            regs[layout.type_offset] = SEGMENT_TYPES["step"]
            regs[layout.target_offset] = encode_scaled(seg.target_C, decimals, label)
        else:
            if i != len(segs):
                raise InstrumentError(f"{label}: 'end' may only be the last segment")
            regs[layout.type_offset] = SEGMENT_TYPES["end"]
        out.append(regs)
    return out


def decode_segment(regs: Sequence[int], layout: SegmentLayout, decimals: int) -> FurnaceSegment:
    """One segment's registers as the controller runs it (inverse of the encoding)."""
    kind = regs[layout.type_offset]
    target = decode_scaled(regs[layout.target_offset], decimals)
    if kind == SEGMENT_TYPES["ramp_rate"]:
        rate = decode_scaled(regs[layout.rate_offset], decimals) / layout.rate_unit_s
        return FurnaceSegment("ramp", target, rate_K_per_s=rate)
    if kind == SEGMENT_TYPES["ramp_time"]:
        duration = regs[layout.duration_offset] * layout.time_unit_s
        return FurnaceSegment("ramp", target, duration_s=duration)
    if kind == SEGMENT_TYPES["dwell"]:
        return FurnaceSegment("dwell", duration_s=regs[layout.duration_offset] * layout.time_unit_s)
    if kind == SEGMENT_TYPES["step"]:
        return FurnaceSegment("step", target)
    if kind == SEGMENT_TYPES["end"]:
        return FurnaceSegment("end")
    raise InstrumentError(f"segment type {kind} is not one this driver loads")


def _duration(seconds: float, layout: SegmentLayout, label: str) -> int:
    if not math.isfinite(seconds) or seconds <= 0:
        raise InstrumentError(f"{label}: duration must be positive, got {seconds}")
    units = round(seconds / layout.time_unit_s)
    if not 1 <= units <= 32767:
        raise InstrumentError(
            f"{label}: {seconds} s is not representable in units of {layout.time_unit_s} s"
        )
    return units


def decode_status(raw: int, settings: EurothermSettings, request: bytes = b"") -> str:
    """Programme status word to one of reset/running/hold/holdback/complete."""
    try:
        return settings.status_codes[raw]
    except KeyError:
        raise InstrumentProtocolError(
            f"unknown programme status {raw} for a {settings.series}", command=request
        ) from None
