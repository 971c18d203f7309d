"""The Eurotherm driver's Modbus RTU (pymodbus) against the furnace simulator over
loopback TCP on the virtual clock: the bytes on the wire, and how pymodbus' timeouts and
retries turn silence, noise and a dropped link into our typed errors."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labrig.drivers.capabilities import (
    FurnaceSegment,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeout,
)
from labrig.drivers.eurotherm import EurothermFurnace, settings_2400
from labrig.drivers.modbus import ModbusException, ModbusProtocolError, ModbusRtuBus
from labrig.drivers.transport import TransportClosed
from labrig.simulators.faults import Delay, Disconnect
from labrig.simulators.furnace import start_eurotherm_sim
from labrig.simulators.furnace.modbus_slave import crc_bytes
from tests.helpers import run_virtual_strict

H = bytes.fromhex
QUIET_S = 0.25


def frame(body: str) -> bytes:
    raw = H(body)
    return raw + crc_bytes(raw)


def test_the_driver_sends_the_manuals_frames() -> None:
    async def main() -> list[bytes]:
        async with (
            await start_eurotherm_sim() as sim,
            EurothermFurnace.from_url(sim.address, 1, settings_2400()) as furnace,
        ):
            await furnace.set_setpoint(400.0)
            assert await furnace.read_temperature() == 25.0
            await furnace.load_program([FurnaceSegment("ramp", 400.0, rate_K_per_s=2 / 60)])
            await furnace.bus.read_float(1, 0x8002)
            return [req for req, _ in sim.slave.history]

    sent = run_virtual_strict(main())
    assert sent[:4] == [
        frame("01 06 00 23 00 00"),  # rate limit off (register 35) first
        frame("01 06 01 11 00 00"),  # automatic (register 273)
        H("01 06 00 02 0f a0 2d 82"),  # target setpoint 400.0
        H("01 03 00 01 00 01 d5 ca"),  # PV
    ]
    segment = H("01 10 20 90 00 08 10 00 01 0f a0 00 14 00 00 00 00 00 00 00 00 00 00 ec bc")
    assert segment in sent
    assert sent[-1] == H("01 03 80 02 00 02 4c 0b")  # PV as an IEEE float


def _fault_run(
    fault: str, *, timeout_s: float = 0.5, retries: int = 2
) -> tuple[BaseException, float, int]:
    """(error, virtual seconds until it came, requests the simulator saw).

    The bus stays quiet ``QUIET_S`` after a failed exchange before it reports it."""

    async def main() -> tuple[BaseException, float, int]:
        loop = asyncio.get_running_loop()
        async with (
            await start_eurotherm_sim() as sim,
            ModbusRtuBus(sim.address, timeout_s=timeout_s, retries=retries, quiet_s=QUIET_S) as bus,
        ):
            furnace = EurothermFurnace(bus, 1)
            assert await furnace.read_temperature() == 25.0
            setattr(sim.faults, fault, 4 if fault == "truncate_to" else True)
            before = sim.slave.frames_ok
            t0 = loop.time()
            with pytest.raises(Exception) as info:
                await furnace.read_temperature()
            elapsed = loop.time() - t0
            seen = sim.slave.frames_ok - before
            sim.faults.clear()
            assert await furnace.read_temperature() == 25.0  # the line is usable again
            return info.value, elapsed, seen

    return run_virtual_strict(main())


def test_a_silent_instrument_times_out_after_every_retry_on_the_virtual_clock() -> None:
    exc, elapsed, seen = _fault_run("silent", timeout_s=0.5, retries=2)
    assert type(exc) is InstrumentTimeout
    assert "no reply from slave 1 within 0.5 s (3 tries" in str(exc)
    assert elapsed == pytest.approx(1.5 + QUIET_S)  # 3 tries x 0.5 s of simulated time
    assert seen == 3


def test_retries_follow_the_setting() -> None:
    _, elapsed, seen = _fault_run("silent", timeout_s=2.0, retries=0)
    assert elapsed == pytest.approx(2.0 + QUIET_S) and seen == 1


def test_a_garbled_reply_is_a_protocol_error_with_both_frames() -> None:
    exc, elapsed, seen = _fault_run("garbage")
    assert isinstance(exc, ModbusProtocolError)
    assert exc.command == H("01 03 00 01 00 01 d5 ca")
    assert isinstance(exc.reply, bytes) and len(exc.reply) == 7
    assert seen == 3 and elapsed == pytest.approx(1.5 + QUIET_S)


def test_a_truncated_reply_is_a_timeout_naming_what_came() -> None:
    exc, _, _ = _fault_run("truncate_to")
    assert type(exc) is InstrumentTimeout
    assert "incomplete reply" in str(exc) and "got 01 03 02 00" in str(exc)


@pytest.mark.parametrize("quiet_s", [0.0, 0.5])
def test_a_late_reply_is_not_taken_for_the_next_ones(quiet_s: float) -> None:
    """RTU replies carry no id. The simulator answers the first read of PV 0.7 s late
    (past the 0.5 s timeout: the bus asks again), then every reply 0.3 s late. The late
    first reply answers the second try; the reply to that second try is still on its
    way when the next read goes out. Without a quiet time it answers that read."""

    async def main() -> tuple[float, float, int]:
        async with (
            await start_eurotherm_sim() as sim,
            ModbusRtuBus(sim.address, timeout_s=0.5, retries=2, quiet_s=quiet_s) as bus,
        ):
            furnace = EurothermFurnace(bus, 1)
            await furnace.set_setpoint(300.0, rate_K_per_s=1.0)  # working SP ramps ahead
            await asyncio.sleep(60.0)
            sim.server.manipulators += [Delay(delay_s=0.7, count=1), Delay(delay_s=0.3, start=1)]
            pv = await furnace.read_temperature()
            sp = await furnace.read_setpoint()
            return pv, sp, bus.retried

    pv, sp, retried = run_virtual_strict(main())
    assert retried == 1
    assert pv < 50.0
    if quiet_s:
        assert sp == pytest.approx(85.0, abs=1.0)  # 25 °C + 60 s at 1 K/s
    else:
        assert sp == pv  # the failure the quiet time prevents: PV's reply taken for SP


def test_a_dropped_link_is_reported_and_reopened_before_the_next_request() -> None:
    async def main() -> tuple[BaseException, int]:
        async with (
            await start_eurotherm_sim() as sim,
            ModbusRtuBus(sim.address, timeout_s=0.5, retries=1) as bus,
        ):
            furnace = EurothermFurnace(bus, 1)
            assert await furnace.read_temperature() == 25.0
            sim.server.manipulators.append(Disconnect(count=1))  # hang up instead of a reply
            with pytest.raises(TransportClosed) as info:
                await furnace.read_temperature()
            assert await furnace.read_temperature() == 25.0
            return info.value, bus.connects

    exc, connects = run_virtual_strict(main())
    assert "link lost" in str(exc)
    assert connects == 2


def test_an_unreachable_bus_is_a_transport_error() -> None:
    async def main() -> None:
        async with await start_eurotherm_sim() as sim:
            url = sim.address
        with pytest.raises(TransportClosed, match="cannot open"):
            async with ModbusRtuBus(url, timeout_s=0.5):
                pass

    run_virtual_strict(main())


def test_exception_replies_and_bad_arguments() -> None:
    async def main() -> None:
        async with (
            await start_eurotherm_sim() as sim,
            ModbusRtuBus(sim.address, timeout_s=0.5) as bus,
        ):
            with pytest.raises(ModbusException, match="illegal data value") as info:
                await bus.write_register(1, 3, 500)  # output in automatic: refused
            assert info.value.code == 3
            assert info.value.reply == frame("01 86 03")
            with pytest.raises(ModbusException, match="illegal data address"):
                await bus.read_registers(1, 9999, 1)
            for call, message in [
                (bus.read_registers(0, 1, 1), "slave address"),
                (bus.read_registers(1, 1, 126), "register count"),
                (bus.write_register(1, 1, 70000), "register value"),
                (bus.write_registers(1, 1, []), "number of registers"),
            ]:
                with pytest.raises(ValueError, match=message):
                    await call
            assert await bus.read_registers(1, 1, 1) == [250]

    run_virtual_strict(main())


def test_a_cancelled_request_leaves_the_bus_usable() -> None:
    async def main() -> float:
        async with (
            await start_eurotherm_sim() as sim,
            ModbusRtuBus(sim.address, timeout_s=1.0) as bus,
        ):
            furnace = EurothermFurnace(bus, 1)
            sim.faults.silent = True
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await furnace.read_temperature()
            sim.faults.clear()
            return await furnace.read_temperature()

    assert run_virtual_strict(main()) == 25.0


def test_protocol_errors_are_instrument_errors() -> None:
    assert issubclass(ModbusProtocolError, InstrumentProtocolError)
    assert issubclass(ModbusException, ModbusProtocolError)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=40), st.booleans())
def test_any_reply_bytes_give_a_reading_or_our_typed_error(junk: bytes, with_crc: bool) -> None:
    """RELIABILITY: garbage, truncated and oversized replies (fuzzed) end in the driver's
    own typed error - never another exception, never a hang - and the bus recovers."""
    reply = junk + crc_bytes(junk) if with_crc else junk

    async def main() -> tuple[object, float]:
        async with (
            await start_eurotherm_sim() as sim,
            ModbusRtuBus(sim.address, timeout_s=0.2, retries=1) as bus,
        ):
            furnace = EurothermFurnace(bus, 1)
            sim.faults.extra.append(lambda _: reply)
            try:
                outcome: object = await furnace.read_temperature()
            except InstrumentError as exc:
                outcome = exc
            sim.faults.clear()
            return outcome, await furnace.read_temperature()

    outcome, after = run_virtual_strict(main())
    assert isinstance(outcome, float | InstrumentError)
    assert after == 25.0
