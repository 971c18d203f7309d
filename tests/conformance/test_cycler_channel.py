"""CyclerChannel conformance: every implementation honours the protocol's contract.

The MACCOR and Keithley 2450 drivers against their wire-level simulators, the in-process
SimCyclerChannel, and whatever joins :mod:`.implementations`.
"""

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
    RecordRule,
)
from labrig.orchestrator.instruments import Capability

from .implementations import Impl, Running, ids, implementations
from .support import run, run_connected

IMPLS = implementations(Capability.cycler)
each = pytest.mark.parametrize("impl", IMPLS, ids=ids(IMPLS))

#: the default simulated cell: 8.4 mg of cathode at 200 mA/g
ONE_C_A = 200e-3 * 8.4e-3
V_MAX, V_MIN = 3.68, 2.28
LIMITS = ChannelLimits(v_min_V=1.8, v_max_V=3.9, i_max_A=0.01)
REC = RecordRule(every_s=60.0)
HOUR = 3600.0


def charge(step_id: int, c_rate: float, until_V: float = V_MAX) -> ChannelStep:
    return ChannelStep(
        step_id, "cc", "charge", current_A=c_rate * ONE_C_A,
        ends=(EndCondition("voltage", ">=", until_V),), record=REC,
        max_duration_s=30 * HOUR,
    )  # fmt: skip


def discharge(step_id: int, c_rate: float) -> ChannelStep:
    return ChannelStep(
        step_id, "cc", "discharge", current_A=-c_rate * ONE_C_A,
        ends=(EndCondition("voltage", "<=", V_MIN),), record=REC,
        max_duration_s=30 * HOUR,
    )  # fmt: skip


def rest(step_id: int, seconds: float) -> ChannelStep:
    return ChannelStep(
        step_id, "rest", "rest", ends=(EndCondition("time", ">=", seconds),), record=REC
    )


def test_every_cycler_channel_is_covered() -> None:
    assert {"maccor", "keithley2450", "sim"} <= set(ids(IMPLS))


@each
def test_is_a_cycler_channel_with_a_name(impl: Impl) -> None:
    async def body(ch: CyclerChannel) -> None:
        assert isinstance(ch, CyclerChannel)
        assert ch.name

    run_connected(impl, body)


@each
def test_limits_are_written_and_read_back(impl: Impl) -> None:
    other = ChannelLimits(v_min_V=2.5, v_max_V=3.7, i_max_A=0.005)

    async def body(ch: CyclerChannel) -> tuple[ChannelLimits, ChannelLimits]:
        await ch.set_limits(LIMITS)
        first = await ch.get_limits()
        await ch.set_limits(other)
        return first, await ch.get_limits()

    first, second = run_connected(impl, body)
    assert first.matches(LIMITS), first
    assert second.matches(other), second
    assert not second.matches(LIMITS)


@each
def test_a_block_ends_on_its_end_conditions_and_reports_each_step(impl: Impl) -> None:
    steps = [charge(1, 1.0), rest(2, 600.0), discharge(3, 1.0)]

    async def body(ch: CyclerChannel) -> tuple[object, object]:
        await ch.set_limits(LIMITS)
        await ch.start_block(10, steps)
        result = await ch.wait_block(poll_s=30.0)
        return result, await ch.read_records(0)

    result, rec = run_connected(impl, body)
    assert result.block_id == 10
    assert result.state == ChannelState.done, result
    assert [e.step_id for e in result.steps] == [1, 2, 3]
    up, pause, down = result.steps
    over = impl.traits.end_overshoot_V
    assert up.reason == "voltage" and V_MAX - 0.01 <= up.end_voltage_V <= V_MAX + over
    assert up.charge_Ah > 0.5 * ONE_C_A * 0.5  # most of a 1C charge went in
    assert up.charge_Ah == pytest.approx(ONE_C_A * up.time_s / HOUR, rel=0.02)
    assert pause.reason == "time" and pause.time_s == pytest.approx(600.0, abs=31.0)
    assert abs(pause.charge_Ah) < 1e-9
    assert down.reason == "voltage" and V_MIN - over <= down.end_voltage_V <= V_MIN + 0.01
    assert down.charge_Ah < 0
    assert len(rec) > 10
    assert np.all(np.diff(rec.seq) > 0) and np.all(np.diff(rec.time_s) >= 0)
    assert set(np.unique(rec.step_id)) == {1, 2, 3}
    on_charge = rec.step_id == 1
    assert np.all(rec.current_A[on_charge] > 0) and np.all(rec.current_A[rec.step_id == 3] < 0)


@each
def test_read_records_after_returns_only_newer_records(impl: Impl) -> None:
    async def body(ch: CyclerChannel) -> None:
        await ch.set_limits(LIMITS)
        await ch.start_block(1, [charge(1, 0.2)])
        await asyncio.sleep(HOUR)
        first = await ch.read_records(0)
        assert len(first) >= 30
        assert np.all(np.diff(first.seq) > 0)
        last = int(first.seq[-1])
        mid = int(first.seq[len(first) // 2])
        tail = await ch.read_records(mid)
        assert np.all(tail.seq > mid)
        assert tail.seq[0] == first.seq[len(first) // 2 + 1]  # nothing skipped
        await asyncio.sleep(HOUR)
        newer = await ch.read_records(last)
        assert len(newer) >= 30 and np.all(newer.seq > last)
        again = await ch.read_records(last)  # reading does not consume
        assert np.array_equal(again.seq[: len(newer)], newer.seq)
        assert len(await ch.read_records(int(newer.seq[-1]) + 10**9)) == 0
        assert (await ch.status()).last_seq >= int(newer.seq[-1])
        await ch.safe_state()

    run_connected(impl, body)


@each
def test_starting_the_running_block_again_is_a_no_op(impl: Impl) -> None:
    steps = [charge(1, 0.2)]

    async def body(ch: CyclerChannel) -> None:
        await ch.set_limits(LIMITS)
        await ch.start_block(4, steps)
        await asyncio.sleep(HOUR)
        before = await ch.status()
        await ch.start_block(4, steps)
        await asyncio.sleep(60.0)
        after = await ch.status()
        assert after.state == ChannelState.running
        assert after.block_id == 4 and after.step_id == before.step_id == 1
        assert after.step_time_s >= before.step_time_s + 59.0  # not started again
        await ch.safe_state()

    run_connected(impl, body)


@each
def test_safe_state_is_idempotent_and_leaves_the_output_off(impl: Impl) -> None:
    async def body(ch: CyclerChannel) -> None:
        await ch.safe_state()  # on an idle channel too
        await ch.set_limits(LIMITS)
        await ch.start_block(1, [charge(1, 0.5)])
        await asyncio.sleep(600.0)
        assert (await ch.status()).current_A > 0
        await ch.safe_state()
        await ch.safe_state()
        for _ in range(2):
            st = await ch.status()
            assert st.state not in (ChannelState.running, ChannelState.paused), st
            assert abs(st.current_A) < 1e-9, st
            await asyncio.sleep(600.0)

    run_connected(impl, body)


@each
def test_pause_holds_the_block_and_resume_continues_it(impl: Impl) -> None:
    wait = max(60.0, 2 * impl.traits.pause_within_s)

    async def body(ch: CyclerChannel) -> None:
        await ch.set_limits(LIMITS)
        await ch.start_block(2, [charge(1, 1.0)])
        await asyncio.sleep(600.0)
        await ch.pause()
        await asyncio.sleep(wait)
        held = await ch.status()
        assert held.state == ChannelState.paused, held
        assert abs(held.current_A) < 1e-9
        await asyncio.sleep(5 * HOUR)  # far longer than the charge takes: nothing runs
        assert (await ch.status()).state == ChannelState.paused
        await ch.resume()
        await asyncio.sleep(wait)
        going = await ch.status()
        assert going.state == ChannelState.running and going.step_id == 1
        assert going.current_A > 0
        result = await ch.wait_block(poll_s=30.0)
        assert result.state == ChannelState.done
        (end,) = result.steps
        assert end.reason == "voltage"
        # the charge after the pause completed the step, not a new one from empty
        assert end.charge_Ah < 1.2 * ONE_C_A

    run_connected(impl, body)


@each
def test_attach_block_on_the_same_connection_adopts_the_running_block(impl: Impl) -> None:
    steps = [charge(1, 0.2)]

    async def body(ch: CyclerChannel) -> None:
        await ch.set_limits(LIMITS)
        await ch.start_block(3, steps)
        await asyncio.sleep(HOUR)
        before = await ch.status()
        await ch.attach_block(3, steps)
        after = await ch.status()
        assert after.state == ChannelState.running and after.block_id == 3
        assert after.step_time_s >= before.step_time_s
        await ch.safe_state()

    run_connected(impl, body)


@each
def test_attach_block_after_a_host_restart_adopts_the_running_block(impl: Impl) -> None:
    """What ``labrig resume`` does: a new connection bound to the same run, limits read
    back if the instrument can say, then attach. Firmware-side blocks are adopted where
    they are; host-side ones (the instrument keeps no trace) start again from their
    first step."""
    steps = [charge(7, 0.2)]

    async def body(running: Running) -> None:
        async with running.connect() as first:
            first.bind_run("20261203-101500-conformance")
            await first.set_limits(LIMITS)
            await first.start_block(5, steps)
            await asyncio.sleep(2 * HOUR)
            before = await first.status()
        host_side = impl.traits.host_side_blocks
        async with running.connect() as second:
            second.bind_run("20261203-101500-conformance")
            if host_side:
                await second.set_limits(LIMITS)  # they lived in the host that is gone
            await second.attach_block(5, steps, time_base_s=0.0)
            await asyncio.sleep(60.0)
            after = await second.status()
            assert after.state == ChannelState.running and after.step_id == 7
            if host_side:
                assert after.step_time_s < before.step_time_s  # started again
            else:
                assert after.step_time_s >= before.step_time_s  # adopted, not restarted
            result = await second.wait_block(poll_s=60.0)
            assert result.state == ChannelState.done
            assert [e.step_id for e in result.steps] == [7]
            if not host_side:  # the step's time counts from its start before the restart
                assert result.steps[0].time_s > before.step_time_s

    run(impl, body)


@each
def test_attach_block_of_an_unknown_block_starts_it(impl: Impl) -> None:
    async def body(ch: CyclerChannel) -> None:
        await ch.set_limits(LIMITS)
        await ch.attach_block(9, [charge(1, 0.5)])
        await asyncio.sleep(300.0)
        st = await ch.status()
        assert st.state == ChannelState.running and st.block_id == 9 and st.step_id == 1
        await ch.safe_state()

    run_connected(impl, body)
