"""Many runs on one MACCOR: block ends come from one (4,1) poll per tester (the
StatusBoard), not from a (4,7) poll per channel; a tester that stops answering fails
every waiting channel into its safe state."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from labrig.drivers.capabilities import ChannelLimits, ChannelState, InstrumentTimeout
from labrig.drivers.maccor import MaccorCycler
from labrig.drivers.maccor.board import StatusBoard
from labrig.simulators.faults import Piece
from labrig.simulators.maccor import serve_maccor
from tests.helpers import run_virtual_strict

from .conftest import cycle_block

LIMITS = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)
POLL_S = 60.0


async def _wait_all(url: str, rates: Sequence[float]) -> tuple[list[object], list[int], int]:
    import asyncio

    cyclers = [
        MaccorCycler.from_url(url, channels=[k], shared_status=True, timeout_s=2.0)
        for k in range(len(rates))
    ]
    for c in cyclers:
        await c.open()
    try:
        for k, (c, rate) in enumerate(zip(cyclers, rates, strict=True)):
            ch = c.channel(k)
            await ch.set_limits(LIMITS)
            await ch.start_block(1, cycle_block(10 * k, rate))
        before = [c.round_trips for c in cyclers]
        board = cyclers[0].status_board()
        assert board is not None
        results = await asyncio.gather(
            *(c.channel(k).wait_block(POLL_S) for k, c in enumerate(cyclers)),
            return_exceptions=True,
        )
        trips = [c.round_trips - b for c, b in zip(cyclers, before, strict=True)]
        return list(results), trips, board.polls
    finally:
        for c in cyclers:
            await c.close()


def test_one_status_poll_per_tester_wakes_each_channel_at_its_block_end() -> None:
    rates = [2.0, 1.0, 0.5, 0.25]

    async def main() -> tuple[list[object], list[int], int, float]:
        import asyncio

        async with serve_maccor(len(rates)) as srv:
            t0 = asyncio.get_running_loop().time()
            results, trips, polls = await _wait_all(srv.url, rates)
            elapsed = asyncio.get_running_loop().time() - t0
        return results, trips, polls, elapsed

    results, trips, polls, elapsed = run_virtual_strict(main())
    for res in results:
        assert not isinstance(res, BaseException), res
        assert res.state == ChannelState.done  # type: ignore[attr-defined]
        assert [e.reason for e in res.steps] == ["voltage", "voltage"]  # type: ignore[attr-defined]
    # each channel: one (4,7) before waiting, one after its end, and its data reads
    assert all(t <= 6 for t in trips), trips
    # the board asked once per period for all four, until the slowest (0.25C) ended
    assert polls == pytest.approx(elapsed / POLL_S, abs=3)
    assert polls > 4 * 60  # 0.25C cycle ~ 8 h at 60 s: hundreds of polls, none per channel


@dataclass
class _StallMultiStatus:
    """Hold every (4,1) reply for good: the tester stops answering status polls."""

    applied: int = 0

    def transform(self, direction: str, data: bytes) -> Sequence[Piece]:
        if direction == "tx" and re.search(rb'"FClass":\s*4,\s*"FNum":\s*1\b', data):
            self.applied += 1
            return [(float("inf"), data)]
        return [(0.0, data)]


def test_a_tester_that_stops_answering_fails_every_waiting_channel_safely() -> None:
    stall = _StallMultiStatus()

    async def main() -> list[object]:
        async with serve_maccor(2, manipulators=[stall]) as srv:
            results, _trips, _polls = await _wait_all(srv.url, [1.0, 1.0])
            assert srv.tester.channels[0].short_status(0.0)["Stat"] in (0, 7)  # reset
            assert srv.tester.channels[1].short_status(0.0)["Stat"] in (0, 7)
        return results

    results = run_virtual_strict(main())
    assert stall.applied >= 1
    for res in results:
        assert isinstance(res, InstrumentTimeout)
        assert "lost the tester" in str(res)


def test_board_is_one_per_tester_and_loop() -> None:
    async def main() -> None:
        a = StatusBoard.for_tester("tcp://127.0.0.1:1", frozenset({2}), {})
        b = StatusBoard.for_tester("tcp://127.0.0.1:1", frozenset({2}), {})
        c = StatusBoard.for_tester("tcp://127.0.0.1:2", frozenset({2}), {})
        assert a is b and a is not c and a.waiting == 0

    run_virtual_strict(main())


def test_overlapping_record_reads_of_one_channel_take_turns() -> None:
    """The executor's collection and the tail read at a block's end can overlap: both
    must see every record once, not fail on 'data resumes at record 1'."""

    async def main() -> list[int]:
        import asyncio

        async with serve_maccor(1) as srv, MaccorCycler.from_url(srv.url) as cyc:
            ch = cyc.channel(0)
            await ch.set_limits(LIMITS)
            await ch.start_block(1, cycle_block(0, 1.0))
            await asyncio.sleep(1800.0)
            a, b = await asyncio.gather(ch.read_records(0), ch.read_records(0))
            await ch.safe_state()
        return [len(a), len(b), int(a.seq[-1] - b.seq[-1])]

    n_a, n_b, diff = run_virtual_strict(main())
    assert n_a > 100 and n_a == n_b and diff == 0


def test_a_cancelled_poller_hands_the_poll_to_the_other_waiters() -> None:
    """The board has no task of its own: a waiter polls for all. When that waiter is
    cancelled (its run gave up), another takes over on the same schedule."""

    async def main() -> tuple[list[object], int, int, float]:
        import asyncio

        async with serve_maccor(3) as srv:
            cyclers = [
                MaccorCycler.from_url(srv.url, channels=[k], shared_status=True) for k in range(3)
            ]
            async with contextlib.AsyncExitStack() as stack:
                for c in cyclers:
                    await stack.enter_async_context(c)
                for k, c in enumerate(cyclers):
                    await c.channel(k).set_limits(LIMITS)
                    await c.channel(k).start_block(1, cycle_block(10 * k, 1.0))
                board = cyclers[0].status_board()
                assert board is not None

                async def impatient() -> str:
                    try:
                        async with asyncio.timeout(3600.0):
                            await cyclers[0].channel(0).wait_block(POLL_S)
                    except TimeoutError:
                        return "gave up"
                    return "done"

                async def patient(k: int) -> object:
                    await asyncio.sleep(1.0)  # arrive after the impatient one: it polls
                    assert board.poller == 0
                    return await cyclers[k].channel(k).wait_block(POLL_S)

                t0 = asyncio.get_running_loop().time()
                results = await asyncio.gather(impatient(), patient(1), patient(2))
                elapsed = asyncio.get_running_loop().time() - t0
                assert board.waiting == 0
                await cyclers[0].channel(0).safe_state()
                return list(results), board.polls, srv.tester.requests, elapsed

    results, polls, _requests, elapsed = run_virtual_strict(main())
    assert results[0] == "gave up"
    for res in results[1:]:
        assert res.state == ChannelState.done  # type: ignore[attr-defined]
    assert elapsed > 3600.0 + 10 * POLL_S  # the others waited well past the hand-over
    assert polls == pytest.approx(elapsed / POLL_S, abs=3)  # one schedule throughout


def test_a_board_connection_that_times_out_at_first_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A station of a thousand channels connecting at once can make the board's own
    first connect time out: it is retried like a lost link, not taken for a lost
    tester (which would stop every channel waiting on the board)."""
    from labrig.drivers.maccor import board as board_mod

    attempts: list[str] = []
    real = board_mod.transport_from_url

    def flaky(url: str, **kw: object) -> object:
        t = real(url, **kw)  # type: ignore[arg-type]
        connect = t._connect

        async def first_times_out(deadline: float) -> None:
            attempts.append("timeout" if not attempts else "ok")
            if attempts[-1] == "timeout":
                raise TimeoutError
            await connect(deadline)

        t._connect = first_times_out  # type: ignore[method-assign]
        return t

    monkeypatch.setattr(board_mod, "transport_from_url", flaky)

    async def main() -> list[object]:
        async with serve_maccor(2) as srv:
            results, _trips, polls = await _wait_all(srv.url, [2.0, 2.0])
            assert polls > 0
        return results

    results = run_virtual_strict(main())
    assert attempts[:2] == ["timeout", "ok"]
    for res in results:
        assert not isinstance(res, BaseException), res
        assert res.state == ChannelState.done  # type: ignore[attr-defined]
