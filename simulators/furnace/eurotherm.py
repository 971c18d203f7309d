"""The Eurotherm 2400 / 3200 register map in front of a :class:`FurnaceSim`.

Written from the controllers' communications manuals, independently of the driver:
integer registers scaled by the display's decimal places, full-resolution IEEE floats at
0x8000 + 2 x register (high word first), the 2400 programmer's segment area, and the two
series' different programme status codes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, replace
from typing import Any

from labrig.simulators.furnace.controller import SEG_END, Segment
from labrig.simulators.furnace.modbus_slave import ILLEGAL_ADDRESS, ILLEGAL_VALUE, ModbusError
from labrig.simulators.furnace.sim import FurnaceSim

__all__ = ["EurothermBank", "SeriesConfig", "series_2400", "series_3200"]

PV, TARGET_SP, OUTPUT, WORKING_SP = 1, 2, 3, 5
PROGRAM_NUMBER, PROGRAM_STATUS, SP1, SP2 = 22, 23, 24, 25
RATE_LIMIT, AUTO_MANUAL, RAMP_UNITS = 35, 273, 531
FLOAT_AREA = 0x8000
FLOAT_REGISTERS = (PV, TARGET_SP, OUTPUT, WORKING_SP, SP1, SP2, RATE_LIMIT)


@dataclass(frozen=True)
class SeriesConfig:
    """What differs between the series (and what the lab's unit may be configured as)."""

    name: str
    status_codes: dict[str, int]
    has_programmer: bool
    decimals: int = 1
    output_decimals: int = 1
    sensor_break_raw: int = 0x8000
    rate_unit_s: float = 60.0  # 2400: per minute; 3200: from register 531
    program_base: int = 8192
    program_stride: int = 136
    segment_stride: int = 8
    max_segments: int = 16
    max_programs: int = 4
    segment_fields: tuple[int, int, int, int] = (0, 1, 2, 3)  # type, target, rate, duration
    time_unit_s: float = 60.0
    holdback_K: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)


def series_2400(**kw: Any) -> SeriesConfig:
    """A 2400 (``kw``: other values of :class:`SeriesConfig` fields)."""
    codes = {"reset": 1, "running": 2, "hold": 4, "holdback": 8, "complete": 16}
    return replace(SeriesConfig("2400", codes, True), **kw)


def series_3200(**kw: Any) -> SeriesConfig:
    """A 3200 (``kw``: other values of :class:`SeriesConfig` fields)."""
    codes = {"reset": 0, "running": 1, "hold": 2, "holdback": 1, "complete": 3}
    return replace(SeriesConfig("3200", codes, False), **kw)


_RAMP_UNITS_S = {0: 60.0, 1: 3600.0, 2: 1.0}


def _s16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


class EurothermBank:
    """Register reads and writes with the controller's side effects."""

    def __init__(self, sim: FurnaceSim, config: SeriesConfig) -> None:
        self.sim = sim
        self.config = config
        self.program_number = 1
        self.ramp_units = 0
        self.program_store: dict[int, int] = {}
        self.writes = 0

    # ------------------------------------------------------------------ helpers

    def _rate_unit_s(self) -> float:
        if self.config.name == "3200":
            return _RAMP_UNITS_S[self.ramp_units]
        return self.config.rate_unit_s

    def _value(self, reg: int) -> float:
        c = self.sim.controller
        if reg == PV:
            pv = self.sim.pv()
            return math.nan if pv is None else pv
        if reg in (TARGET_SP, SP1):
            return c.target_sp_C
        if reg == SP2:
            return c.sp2_C
        if reg == OUTPUT:
            return c.output_pct
        if reg == WORKING_SP:
            return c.working_sp_C
        if reg == RATE_LIMIT:
            return c.rate_limit_K_per_s * self._rate_unit_s()
        raise ModbusError(ILLEGAL_ADDRESS)

    def _scaled(self, value: float, decimals: int) -> int:
        return round(value * float(10**decimals)) & 0xFFFF

    def _in_program_area(self, reg: int) -> bool:
        c = self.config
        end = c.program_base + c.program_stride * (c.max_programs + 1)
        return c.has_programmer and c.program_base <= reg < end

    def _read_one(self, reg: int) -> int:
        c = self.config
        if reg in (PV, TARGET_SP, SP1, SP2, WORKING_SP, RATE_LIMIT):
            if reg == PV and self.sim.pv() is None:
                return c.sensor_break_raw
            return self._scaled(self._value(reg), c.decimals)
        if reg == OUTPUT:
            return self._scaled(self._value(reg), c.output_decimals)
        if reg == PROGRAM_STATUS:
            return c.status_codes[self.sim.controller.program_state]
        if reg == PROGRAM_NUMBER and c.has_programmer:
            return self.program_number
        if reg == AUTO_MANUAL:
            return 1 if self.sim.controller.manual else 0
        if reg == RAMP_UNITS and c.name == "3200":
            return self.ramp_units
        if self._in_program_area(reg):
            return self.program_store.get(reg, 0)
        raise ModbusError(ILLEGAL_ADDRESS)

    def _read_float_word(self, addr: int) -> int:
        reg, word = divmod(addr - FLOAT_AREA, 2)
        if reg not in FLOAT_REGISTERS:
            raise ModbusError(ILLEGAL_ADDRESS)
        hi, lo = struct.unpack(">HH", struct.pack(">f", self._value(reg)))
        return int(lo if word else hi)

    # ------------------------------------------------------------------ RegisterBank

    def read(self, start: int, count: int) -> list[int]:
        self.sim.advance_to()
        out = []
        for addr in range(start, start + count):
            out.append(self._read_float_word(addr) if addr >= FLOAT_AREA else self._read_one(addr))
        return out

    def write(self, start: int, values: list[int]) -> None:
        self.sim.advance_to()
        self.writes += 1
        if start >= FLOAT_AREA:
            if (start - FLOAT_AREA) % 2 or len(values) % 2:
                raise ModbusError(ILLEGAL_ADDRESS)
            for i in range(0, len(values), 2):
                reg = (start - FLOAT_AREA) // 2 + i // 2
                packed = struct.pack(">HH", values[i], values[i + 1])
                self._set(reg, struct.unpack(">f", packed)[0])
            return
        # Check every register first, so a refused block write changes nothing.
        for i in range(len(values)):
            reg = start + i
            if not (self._in_program_area(reg) or reg in self._writable()):
                raise ModbusError(ILLEGAL_ADDRESS)
        for i, raw in enumerate(values):
            self._write_one(start + i, raw)

    def _writable(self) -> set[int]:
        regs = {TARGET_SP, OUTPUT, SP1, SP2, RATE_LIMIT, AUTO_MANUAL, PROGRAM_STATUS}
        if self.config.has_programmer:
            regs.add(PROGRAM_NUMBER)
        if self.config.name == "3200":
            regs.add(RAMP_UNITS)
        return regs

    def _set(self, reg: int, value: float) -> None:
        c = self.sim.controller
        if not math.isfinite(value):
            raise ModbusError(ILLEGAL_VALUE)
        if reg in (TARGET_SP, SP1):
            c.target_sp_C = value
        elif reg == SP2:
            c.sp2_C = value
        elif reg == RATE_LIMIT:
            if value < 0:
                raise ModbusError(ILLEGAL_VALUE)
            c.rate_limit_K_per_s = value / self._rate_unit_s()
        elif reg == OUTPUT:
            if not c.manual or not 0 <= value <= 100:
                raise ModbusError(ILLEGAL_VALUE)
            c.manual_output_pct = c.output_pct = value
        else:
            raise ModbusError(ILLEGAL_ADDRESS)

    def _write_one(self, reg: int, raw: int) -> None:
        c = self.config
        ctrl = self.sim.controller
        if self._in_program_area(reg):
            if ctrl.program_state != "reset" and self._program_of(reg) == self.program_number:
                raise ModbusError(ILLEGAL_VALUE)  # no edits to the running programme
            self.program_store[reg] = raw
        elif reg in (TARGET_SP, SP1, SP2, RATE_LIMIT):
            self._set(reg, _s16(raw) / 10**c.decimals)
        elif reg == OUTPUT:
            self._set(reg, _s16(raw) / 10**c.output_decimals)
        elif reg == AUTO_MANUAL:
            if raw not in (0, 1):
                raise ModbusError(ILLEGAL_VALUE)
            if raw == 1 and not ctrl.manual:
                ctrl.manual_output_pct = ctrl.output_pct  # bumpless to manual
            ctrl.manual = raw == 1
        elif reg == PROGRAM_NUMBER:
            if not 1 <= raw <= c.max_programs:
                raise ModbusError(ILLEGAL_VALUE)
            self.program_number = raw
        elif reg == RAMP_UNITS:
            if raw not in _RAMP_UNITS_S:
                raise ModbusError(ILLEGAL_VALUE)
            self.ramp_units = raw
        elif reg == PROGRAM_STATUS:
            self._command(raw)

    def _program_of(self, reg: int) -> int:
        return (reg - self.config.program_base) // self.config.program_stride

    def _command(self, raw: int) -> None:
        codes = self.config.status_codes
        ctrl = self.sim.controller
        if raw == codes["reset"]:
            ctrl.reset()
        elif raw == codes["hold"]:
            ctrl.hold()
        elif raw == codes["running"]:
            if not self.config.has_programmer:
                raise ModbusError(ILLEGAL_VALUE)
            segments = self.segments()
            if not segments or segments[0].kind == SEG_END:
                raise ModbusError(ILLEGAL_VALUE)  # nothing to run
            ctrl.run(segments, self.sim.pv())
        else:
            raise ModbusError(ILLEGAL_VALUE)

    def segments(self, program: int | None = None) -> list[Segment]:
        """The stored programme decoded (up to and including its end segment)."""
        c = self.config
        p = self.program_number if program is None else program
        ft, fsp, frate, fdur = c.segment_fields
        scale = 10**c.decimals
        out = []
        for s in range(1, c.max_segments + 1):
            base = c.program_base + c.program_stride * p + c.segment_stride * s
            kind = self.program_store.get(base + ft, 0)
            out.append(
                Segment(
                    kind=kind,
                    target_C=_s16(self.program_store.get(base + fsp, 0)) / scale,
                    rate_K_per_s=_s16(self.program_store.get(base + frate, 0))
                    / scale
                    / c.rate_unit_s,
                    duration_s=self.program_store.get(base + fdur, 0) * c.time_unit_s,
                )
            )
            if kind == SEG_END:
                break
        return out
