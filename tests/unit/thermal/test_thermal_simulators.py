"""Simulator physics and wire devices on their own (no drivers involved)."""

from __future__ import annotations

import pytest

from labrig.simulators.chamber import ChamberModel, EspecDevice
from labrig.simulators.furnace import (
    EurothermBank,
    FurnaceSim,
    OverTempLimit,
    RtuSlave,
    Segment,
    series_2400,
)
from labrig.simulators.furnace.controller import SEG_DWELL, SEG_END, SEG_RATE
from labrig.simulators.furnace.modbus_slave import crc_bytes
from labrig.simulators.gas import AlicatBusDevice, MfcModel, MfcParams

H = bytes.fromhex


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def anneal() -> list[Segment]:
    return [Segment(SEG_RATE, 400.0, 2 / 60), Segment(SEG_DWELL, duration_s=3600), Segment(SEG_END)]


def test_programme_tracks_ramp_with_small_lag_and_overshoot() -> None:
    clock = Clock()
    sim = FurnaceSim(clock)
    sim.controller.run(anneal(), sim.pv())
    worst_lag, peak = 0.0, 0.0
    for k in range(1, 1800):
        clock.t = k * 10.0
        sim.advance_to()
        pv = sim.pv()
        assert pv is not None
        ideal = min(400.0, 25.0 + 2 / 60 * clock.t)
        if 600 < clock.t < 11_000:
            worst_lag = max(worst_lag, abs(pv - ideal))
        peak = max(peak, pv)
    assert worst_lag < 3.0
    assert 400.0 < peak < 405.0  # a little overshoot, not a lot
    assert sim.controller.program_state == "complete"


def test_one_big_time_jump_equals_many_small_ones() -> None:
    a, b = Clock(), Clock()
    s1, s2 = FurnaceSim(a), FurnaceSim(b)
    for s in (s1, s2):
        s.controller.run(anneal(), s.pv())
    for k in range(1, 361):
        a.t = k * 40.0
        s1.advance_to()
    b.t = 360 * 40.0
    s2.advance_to()
    assert s1.plant.temperature_C == pytest.approx(s2.plant.temperature_C, abs=1e-9)
    assert s1.controller.working_sp_C == pytest.approx(s2.controller.working_sp_C)


def test_limit_trips_latches_and_refuses_reset_while_hot() -> None:
    clock = Clock()
    sim = FurnaceSim(clock, limit_C=150.0)
    sim.inject(heater_stuck_on=True)
    clock.t = 3600.0
    sim.advance_to()  # nobody polled: the limit still tripped on its own thermocouple
    assert sim.limit is not None and sim.limit.tripped and sim.limit.trip_count == 1
    assert sim.plant.power_W == 0.0
    assert sim.plant.temperature_C < 170.0  # cut near the limit, not at full runaway
    hot = FurnaceSim(clock, limit_C=150.0, start_C=200.0)
    hot.advance_to(clock.t + 1.0)
    assert hot.limit is not None and hot.limit.tripped
    assert not hot.limit.reset_by_hand()
    clock.t = 30 * 3600.0
    sim.advance_to()
    assert sim.limit.tripped  # latched even after cooling
    assert sim.limit.reset_by_hand()


def test_limit_fails_safe_on_nan() -> None:
    lim = OverTempLimit(100.0)
    assert not lim.check(float("nan"))


def test_sensor_break_drives_output_to_zero() -> None:
    clock = Clock()
    sim = FurnaceSim(clock)
    sim.controller.target_sp_C = 300.0
    clock.t = 600.0
    sim.advance_to()
    assert sim.controller.output_pct > 0
    sim.thermocouple_open = True
    clock.t = 610.0
    sim.advance_to()
    assert sim.controller.output_pct == 0.0


def _frame(hexstr: str) -> bytes:
    body = H(hexstr)
    return body + crc_bytes(body)


def test_rtu_slave_answers_reads_and_hunts_through_garbage() -> None:
    clock = Clock()
    bank = EurothermBank(FurnaceSim(clock, start_C=24.2), series_2400())
    slave = RtuSlave(1, bank)
    read_pv = H("01 03 00 01 00 01 d5 ca")
    assert slave.feed(read_pv, 0.0) == [_frame("01 03 02 00 f2")]  # 24.2 -> 242
    assert slave.feed(b"\x07\xff" + read_pv, 1.0) == [_frame("01 03 02 00 f2")]
    assert slave.feed(H("02 03 00 01 00 01 d5 f9"), 2.0) == []  # another slave's frame
    assert slave.feed(_frame("01 03 01 00 00 01"), 3.0) == [_frame("01 83 02")]  # no reg 256
    assert slave.feed(_frame("01 06 00 03 00 05"), 4.0) == [_frame("01 86 03")]  # auto: no
    assert slave.feed(_frame("01 2b 00 00"), 5.0) == []  # unknown function: no frame


def test_programme_area_round_trip_and_run() -> None:
    clock = Clock()
    bank = EurothermBank(FurnaceSim(clock), series_2400())
    base = 8192 + 136 + 8
    bank.write(base, [1, 4000, 20, 0, 0, 0, 0, 0])
    bank.write(base + 8, [0] * 8)
    assert bank.read(base, 4) == [1, 4000, 20, 0]
    bank.write(23, [2])
    assert bank.read(23, 1) == [2]
    segs = bank.segments()
    assert segs[0].target_C == 400.0 and segs[0].rate_K_per_s == pytest.approx(2 / 60)


def test_alicat_bus_device_lines() -> None:
    clock = Clock()
    units = {"A": MfcModel(clock, MfcParams(noise_sccm=0.0)), "B": MfcModel(clock, gas_number=11)}
    bus = AlicatBusDevice(units)
    assert bus.feed(b"AS 50.0\r", 0.0) == [b"A +014.70 +025.00 +000.00 +000.00 +050.00 N2\r"]
    clock.t = 10.0
    # volumetric flow at 14.70 psia is a hair below the standard-condition mass flow
    assert bus.feed(b"A\r", 10.0) == [b"A +014.70 +025.00 +049.99 +050.00 +050.00 N2\r"]
    assert bus.feed(b"C\r", 10.0) == []  # nobody at C
    assert bus.feed(b"BR46\r", 10.0) == [b"B 046 = 11\r"]
    assert bus.feed(b"BW46=8\r", 10.0) == [b"B 046 = 8\r"]
    assert units["B"].gas == "N2"
    assert bus.feed(b"AX\r", 10.0) == [b"A ?\r"]


def test_chamber_device_lines() -> None:
    clock = Clock()
    dev = EspecDevice(ChamberModel(clock))
    assert dev.feed(b"TEMP?\r\n", 0.0) == [b"22.0,25.0,100.0,-40.0\r\n"]
    assert dev.feed(b"TEMP,S45.0\r\n", 0.0) == [b"OK:TEMP,S45.0\r\n"]
    assert dev.feed(b"TEMP,S150.0\r\n", 0.0) == [b"NA:DATA OUT OF RANGE\r\n"]
    assert dev.feed(b"MODE,CONSTANT\r\n", 0.0) == [b"OK:MODE,CONSTANT\r\n"]
    assert dev.feed(b"FOO\r\n", 0.0) == [b"NA:COMMAND ERR\r\n"]
    clock.t = 6 * 3600.0
    reply = dev.feed(b"TEMP?\r\n", clock.t)[0]
    assert abs(float(reply.split(b",")[0]) - 45.0) <= 0.3
