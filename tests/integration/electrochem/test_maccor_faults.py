"""MACCOR driver against a misbehaving MacNet link: split, garbage, drops, stalls."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from labrig.drivers.capabilities import (
    ChannelLimits,
    ChannelState,
    InstrumentProtocolError,
    InstrumentTimeout,
    RecordBatch,
)
from labrig.drivers.maccor import MaccorChannel, MaccorCycler
from labrig.simulators.faults import Disconnect, Garbage, Split, Stall
from labrig.simulators.maccor import serve_maccor
from tests.helpers import run_virtual_strict

from .conftest import cycle_block

LIMITS = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)


async def _run_block(ch: MaccorChannel, block_id: int, c_rate: float = 1.0) -> RecordBatch:
    await ch.start_block(block_id, cycle_block(2 * block_id, c_rate))
    res = await ch.wait_block(poll_s=300)
    assert res.state == ChannelState.done, res
    assert [e.reason for e in res.steps] == ["voltage", "voltage"]
    return await ch.read_records(0)


def _assert_contiguous(batch: RecordBatch) -> None:
    rec = batch.seq & 0xFFFFFFFF
    assert rec[0] == 1
    assert np.array_equal(rec, np.arange(1, len(batch) + 1))


def test_split_frames_both_ways() -> None:
    async def main() -> None:
        srv_split = Split(size=7)
        async with serve_maccor(1, manipulators=[srv_split]) as srv:
            drv_split = Split(size=5)
            async with MaccorCycler.from_url(srv.url, manipulators=[drv_split]) as cyc:
                ch = cyc.channel(0)
                await ch.set_limits(LIMITS)
                batch = await _run_block(ch, 1)
                _assert_contiguous(batch)
        assert srv_split.applied > 5 and drv_split.applied > 5

    run_virtual_strict(main())


def test_garbage_reply_is_retried_on_a_fresh_link() -> None:
    async def main() -> None:
        junk = Garbage(start=3, count=1)
        async with (
            serve_maccor(1, manipulators=[junk]) as srv,
            MaccorCycler.from_url(srv.url) as cyc,
        ):
            ch = cyc.channel(0)
            await ch.set_limits(LIMITS)
            batch = await _run_block(ch, 1)
            _assert_contiguous(batch)
            assert cyc.client.transport.reconnects >= 1
        assert junk.applied == 1

    run_virtual_strict(main())


def test_dropped_connection_mid_step_loses_and_duplicates_nothing() -> None:
    async def main() -> None:
        # replies: 0 limits, 1 file, 2 start, 3+ polls -> drop during the run
        drops = Disconnect(start=5, count=1)
        async with serve_maccor(1, manipulators=[drops]) as srv:
            async with MaccorCycler.from_url(srv.url) as cyc:
                ch = cyc.channel(0)
                await ch.set_limits(LIMITS)
                batch = await _run_block(ch, 1)
                assert drops.applied == 1
                assert cyc.client.transport.reconnects >= 1
            async with MaccorCycler.from_url(srv.url) as fresh:
                ch2 = fresh.channel(0)
                # a second driver reading the same data file sees the very same records
                ch2._block = ch._block.__class__(  # reuse the block's identity only
                    ch._block.block_id, ch._block.proc, ch._block.test_name, 0.0
                )
                again = await ch2.read_records(0)
        _assert_contiguous(batch)
        assert np.array_equal(batch.seq, again.seq)
        assert np.array_equal(batch.voltage_V, again.voltage_V)

    run_virtual_strict(main())


def test_stalled_tester_times_out_and_channel_goes_to_safe_state() -> None:
    async def main() -> None:
        # 1 try + 2 retries of one poll are swallowed; then the link recovers
        stall = Stall(start=4, count=3)
        async with (
            serve_maccor(1, manipulators=[stall]) as srv,
            MaccorCycler.from_url(srv.url, timeout_s=2.0) as cyc,
        ):
            ch = cyc.channel(0)
            await ch.set_limits(LIMITS)
            await ch.start_block(1, cycle_block(0, 1.0))
            with pytest.raises(InstrumentTimeout, match="lost the tester"):
                await ch.wait_block(poll_s=300)
            assert stall.applied == 3
            assert (await ch.status()).state == ChannelState.idle

    run_virtual_strict(main())


def test_reply_outside_protocol_names_command_and_reply() -> None:
    async def main() -> None:
        wrong = b'{"jsonrpc":"2.0","result":{"FClass":4,"FNum":9,"Chan":0},"id":1}\r\n'
        swap = Garbage(start=1, junk=wrong, replace=True)
        async with (
            serve_maccor(1, manipulators=[swap]) as srv,
            MaccorCycler.from_url(srv.url) as cyc,
        ):
            await cyc.echo()
            with pytest.raises(InstrumentProtocolError) as info:
                await cyc.channel(0).status()
        text = str(info.value)
        assert "MacNet reply" in text
        assert '"FNum":7' in text and '"FNum":9' in text  # what was sent and what came

    run_virtual_strict(main())


def test_several_channels_at_once() -> None:
    async def main() -> None:
        async with (
            serve_maccor(4) as srv,
            MaccorCycler.from_url(srv.url, channels=[0, 2, 3]) as cyc,
        ):
            for ch in cyc.channels:
                await ch.set_limits(LIMITS)
            rates = {0: 1.0, 2: 0.5, 3: 2.0}

            async def one(ch: MaccorChannel) -> RecordBatch:
                return await _run_block(ch, 1, rates[ch.number])

            async with asyncio.TaskGroup() as tg:
                tasks = {ch.number: tg.create_task(one(ch)) for ch in cyc.channels}
            lengths = {n: len(t.result()) for n, t in tasks.items()}
            for t in tasks.values():
                _assert_contiguous(t.result())
            # slower rate -> longer run -> more 10 s records
            assert lengths[2] > lengths[0] > lengths[3]
            assert (await cyc.channel(2).status()).state == ChannelState.done

    run_virtual_strict(main())
