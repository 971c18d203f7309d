"""A new MacNet connection learns a channel's tests from the tester alone: (4,6) names the
channel's test (its block), and the data files of the earlier blocks are read back by
their names, with the step ids their procedures carry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from labrig.drivers.capabilities import ChannelLimits, ChannelState, RecordBatch
from labrig.drivers.maccor import MaccorCycler
from labrig.drivers.maccor.cycler import MaccorChannel
from labrig.simulators.maccor import serve_maccor
from tests.helpers import run_virtual_strict

from .conftest import cycle_block

LIMITS = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)
SEQ_BLOCK = 1 << 32


async def _three_blocks(ch: MaccorChannel) -> RecordBatch:
    """Blocks 1 and 2 to their ends, block 3 started and running: every record the
    driver that started them read, as one batch."""
    await ch.set_limits(LIMITS)
    parts = []
    seq = -1
    for n in (1, 2):
        await ch.start_block(n, cycle_block(10 * n, 1.0))
        assert (await ch.wait_block(poll_s=300)).state == ChannelState.done
        parts.append(await ch.read_records(seq))
        seq = int(parts[-1].seq[-1])
    await ch.start_block(3, cycle_block(30, 1.0))
    return RecordBatch.concat(parts)


def _same(got: RecordBatch, held: RecordBatch, *, time_from_first: bool = False) -> None:
    """``got`` holds every record of ``held``, equal (times counted from the first of
    each if ``time_from_first``: a read from block 2 on counts from block 2's start)."""
    a, b = got.select(np.isin(got.seq, held.seq)), held
    assert np.array_equal(a.seq, b.seq)
    assert np.array_equal(a.step_id, b.step_id)
    assert np.array_equal(a.voltage_V, b.voltage_V)
    assert np.array_equal(a.current_A, b.current_A)
    if time_from_first:
        assert np.allclose(a.time_s - a.time_s[0], b.time_s - b.time_s[0])
    else:
        assert np.allclose(a.time_s, b.time_s)


def test_the_tester_names_the_test_of_a_channel() -> None:
    async def main() -> None:
        async with serve_maccor(2) as srv, MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
            ch = cyc.channel(1)
            raw = await cyc.client.call(4, 6, 1)
            assert (raw["TestName"], raw["ProcName"]) == ("", "")  # no test yet
            assert (await ch.status()).block_id is None
            await ch.start_block(4, cycle_block(10, 1.0))
            raw = await cyc.client.call(4, 6, 1)
            assert {k: raw[k] for k in ("FClass", "FNum", "Chan")} == {"FClass": 4, "FNum": 6,
                                                                         "Chan": 1}  # fmt: skip
            assert (raw["TestName"], raw["ProcName"]) == ("LR001B4", "LR001B4")
            await ch.safe_state()

    run_virtual_strict(main())


def test_a_new_connection_reports_the_block_and_reads_every_test_back() -> None:
    async def main() -> None:
        async with serve_maccor(2) as srv:
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                held = await _three_blocks(cyc.channel(1))
            # a new host, no journal: only the tester knows
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                ch = cyc.channel(1)
                st = await ch.status()
                assert st.state == ChannelState.running and st.block_id == 3
                tester = srv.tester.channels[1].reading(srv.tester.now())
                assert st.last_seq == 3 * SEQ_BLOCK + tester["LastRecNum"]
                got = await ch.read_records(-1)
                st = await ch.status()
            assert sorted(set((got.seq >> 32).tolist())) == [1, 2, 3]
            assert len(np.unique(got.seq)) == len(got.seq)
            assert np.all(np.diff(got.time_s) >= 0)
            for b in (1, 2, 3):  # every block's records 1..n, none missing
                rec = got.seq[got.seq >> 32 == b] & (SEQ_BLOCK - 1)
                assert np.array_equal(rec, np.arange(1, len(rec) + 1))
            assert int(got.seq[-1]) == st.last_seq  # up to the tester's newest record
            _same(got, held)  # as read by the host that ran them
            assert set(got.step_id[got.seq >> 32 == 3].tolist()) <= {30, 31}

    run_virtual_strict(main())


def test_a_new_connection_reads_back_from_a_record_on() -> None:
    async def main() -> None:
        async with serve_maccor(2) as srv:
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                held = await _three_blocks(cyc.channel(1))
            after = int(held.seq[len(held) - 5])  # in block 2
            assert after >> 32 == 2
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                got = await cyc.channel(1).read_records(after)
                again = await cyc.channel(1).read_records(int(got.seq[-1]))
            assert int(got.seq[0]) == after + 1
            _same(got, held.select(held.seq > after), time_from_first=True)
            assert sorted(set((got.seq >> 32).tolist())) == [2, 3]
            assert len(again) == 0 or int(again.seq[0]) == int(got.seq[-1]) + 1

    run_virtual_strict(main())


def test_a_test_of_someone_elses_is_no_block_and_ours_are_read_in_order() -> None:
    async def main() -> None:
        async with serve_maccor(2) as srv:
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                ch = cyc.channel(1)
                held = await _three_blocks(ch)
                await ch.safe_state()
                # someone at the tester starts a test of their own on the channel
                params = {"TestName": "cell 7 formation", "ProcName": "LR001B1",
                          "Comment": "", "Crate": 1, "ChamberNum": 0}  # fmt: skip
                assert (await cyc.client.call(6, 2, 1, params))["Result"] == "OK"
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                ch = cyc.channel(1)
                assert (await ch.status()).block_id is None
                got = await ch.read_records(-1)
                await ch.safe_state()
            # blocks 1, 2 and 3 (reset early), up to the first block the tester lacks
            assert sorted(set((got.seq >> 32).tolist())) == [1, 2, 3]
            _same(got, held)

    run_virtual_strict(main())


def test_a_tester_that_refuses_4_6_reports_no_block_and_ours_are_read_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    async def main() -> None:
        async with serve_maccor(2) as srv:
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                held = await _three_blocks(cyc.channel(1))
            tester = srv.tester
            handle = tester.handle

            def refuse_4_6(frame: Any) -> bytes:
                p = json.loads(bytes(frame))["params"]
                if (p["FClass"], p["FNum"]) == (4, 6):
                    body = {"jsonrpc": "2.0", "id": json.loads(bytes(frame))["id"],
                            "error": {"code": -32002, "message": "Invalid FNum"}}  # fmt: skip
                    return json.dumps(body).encode() + b"\r\n"
                return handle(frame)

            monkeypatch.setattr(tester, "handle", refuse_4_6)
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                ch = cyc.channel(1)
                st = await ch.status()
                got = await ch.read_records(-1)
                await ch.safe_state()
            assert st.state == ChannelState.running and st.block_id is None
            assert sorted(set((got.seq >> 32).tolist())) == [1, 2, 3]
            _same(got, held)

    run_virtual_strict(main())
