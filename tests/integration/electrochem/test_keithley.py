"""Keithley 2450 driver against the simulated SMU through pyvisa-py on loopback TCP."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from labrig.drivers.capabilities import (
    ChannelLimits,
    ChannelState,
    ChannelStep,
    CyclerChannel,
    EndCondition,
    InstrumentTimeout,
    RecordRule,
)
from labrig.drivers.keithley import K2450Channel
from labrig.simulators.engine import ChannelEngine
from labrig.simulators.faults import Garbage, Stall
from labrig.simulators.keithley import serve_k2450
from tests.helpers import run_virtual_strict

from .conftest import ONE_C_A, V_MAX

GRACE = 0.002
LIMITS = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)


def _charge(step_id: int = 1, until: float | None = V_MAX) -> list[ChannelStep]:
    ends = (EndCondition("voltage", ">=", until),) if until is not None else ()
    return [
        ChannelStep(step_id, "cc", "charge", current_A=2 * ONE_C_A, ends=ends,
                    record=RecordRule(every_s=120.0), max_duration_s=4 * 3600.0)
    ]  # fmt: skip


def test_cc_step_ends_at_the_cutoff() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = ChannelEngine(None, noise=0.0, now=loop.time())
        async with serve_k2450(engine) as srv, K2450Channel.from_url(srv.url, poll_s=5.0) as ch:
            assert isinstance(ch, CyclerChannel)
            await ch.set_limits(LIMITS)
            assert (await ch.get_limits()).matches(LIMITS)
            await ch.start_block(1, _charge())
            res = await ch.wait_block(poll_s=600.0)
            assert res.state == ChannelState.done, res
            (end,) = res.steps
            assert end.reason == "voltage"
            assert V_MAX <= end.end_voltage_V < V_MAX + 0.02  # one poll of overshoot at most
            assert end.charge_Ah == pytest.approx(2 * ONE_C_A * end.time_s / 3600.0)
            rec = await ch.read_records(0)
            assert np.all(np.diff(rec.seq) == 1) and np.all(np.diff(rec.time_s) > 0)
            assert rec.voltage_V[-1] == end.end_voltage_V
            assert not srv.smu.output  # block done: output off
            assert engine.ocv(loop.time()) > 3.3  # the cell really was charged

    run_virtual_strict(main(), grace_s=GRACE)


def test_compliance_holds_the_cell_when_the_host_is_absent() -> None:
    async def main() -> None:
        async with serve_k2450(noise=0.0) as srv, K2450Channel.from_url(srv.url) as ch:
            await ch.write(":SOUR:CURR:VLIM 3.6;:SOUR:CURR:LEV 0.00336;:OUTP ON")
            await ch.check_errors("setup")
            await asyncio.sleep(3 * 3600.0)  # nobody polls
            v = float(await ch.query(":READ?"))
            assert 3.59 < v <= 3.6 + 1e-6
            assert await ch.query(":SOUR:CURR:VLIM:TRIP?") == b"1\n"

    run_virtual_strict(main(), grace_s=GRACE)


def test_driver_latches_a_compliance_trip_as_fault() -> None:
    async def main() -> None:
        async with serve_k2450(noise=0.0) as srv, K2450Channel.from_url(srv.url, poll_s=5.0) as ch:
            await ch.set_limits(ChannelLimits(2.0, 3.6, 0.01))
            await ch.start_block(1, _charge(until=None))  # no cut-off: only the guard
            res = await ch.wait_block(poll_s=600.0)
            assert res.state == ChannelState.fault and "compliance" in (res.fault or "")
            assert res.steps[-1].reason == "safety"
            assert not srv.smu.output
            with pytest.raises(Exception, match="fault"):
                await ch.start_block(2, _charge(2))

    run_virtual_strict(main(), grace_s=GRACE)


def test_buffered_acquisition() -> None:
    async def main() -> None:
        async with serve_k2450(noise=0.0) as srv, K2450Channel.from_url(srv.url) as ch:
            await ch.write(":SOUR:CURR:LEV 0.00168;:OUTP ON")
            v, t = await ch.acquire(10, 30.0)
            assert np.allclose(t, 30.0 * np.arange(10))
            assert np.all(np.diff(v) > 0)  # charging
            assert srv.smu.commands > 5
            await ch.safe_state()
            assert not srv.smu.output

    run_virtual_strict(main(), grace_s=GRACE)


def test_out_of_protocol_reply_faults_the_block_with_command_and_reply() -> None:
    async def main() -> None:
        junk = Garbage(start=12, count=1, junk=b"OVERLOAD?\n", replace=True)
        async with (
            serve_k2450(manipulators=[junk]) as srv,
            K2450Channel.from_url(srv.url, poll_s=5.0) as ch,
        ):
            await ch.set_limits(LIMITS)
            await ch.start_block(1, _charge())
            res = await ch.wait_block(poll_s=600.0)
            assert res.state == ChannelState.fault
            assert "InstrumentProtocolError" in (res.fault or "")
            assert "OVERLOAD?" in (res.fault or "") and "sent" in (res.fault or "")
            assert not srv.smu.output

    run_virtual_strict(main(), grace_s=GRACE)


def test_stalled_instrument_times_out_and_output_goes_off() -> None:
    async def main() -> None:
        stall = Stall(start=12)
        async with serve_k2450(manipulators=[stall]) as srv:
            ch = K2450Channel.from_url(srv.url, poll_s=5.0, timeout_s=1.0)
            await ch.open()
            try:
                await ch.set_limits(LIMITS)
                await ch.start_block(1, _charge())
                res = await ch.wait_block(poll_s=600.0)
                assert res.state == ChannelState.fault and "InstrumentTimeout" in (res.fault or "")
                with pytest.raises(InstrumentTimeout):
                    await ch.safe_state()  # cannot be confirmed ...
                assert not srv.smu.output  # ... but the instrument took it
            finally:
                await ch.close()  # the output cannot be confirmed off: no error on close

    run_virtual_strict(main(), grace_s=GRACE)


def test_attach_after_a_host_restart_restarts_the_block_safely() -> None:
    async def main() -> None:
        async with serve_k2450(noise=0.0) as srv:
            async with K2450Channel.from_url(srv.url) as dead_host:
                await dead_host.write(":SOUR:CURR:LEV 0.00336;:OUTP ON")  # left sourcing
            srv.smu.output = True  # a host that died does not switch the output off
            async with K2450Channel.from_url(srv.url, poll_s=5.0) as ch:
                await ch.set_limits(LIMITS)
                await ch.attach_block(7, _charge(), time_base_s=1000.0)
                res = await ch.wait_block(poll_s=600.0)
                assert res.state == ChannelState.done and res.steps[0].reason == "voltage"
                assert (await ch.read_records(0)).time_s[0] >= 1000.0

    run_virtual_strict(main(), grace_s=GRACE)
