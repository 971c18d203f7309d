"""The MACCOR driver on the real-time loop `labrig run` uses (uvloop where installed):
a block started, its records read over MacNet as they are made, the status board
polled, and the channel left in its safe state."""

from __future__ import annotations

import asyncio

import pytest

from labrig.drivers.capabilities import ChannelLimits, ChannelState
from labrig.drivers.maccor import MaccorCycler
from labrig.orchestrator.clock import EVENT_LOOP_ENV, run_real_time
from labrig.simulators.maccor import serve_maccor

from .conftest import cycle_block

LIMITS = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_records_and_status_on_the_real_time_loop(
    loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv(EVENT_LOOP_ENV, loop)

    async def main() -> tuple[str, list[int], list[int], list[float], ChannelState, ChannelState]:
        async with serve_maccor(2) as srv, MaccorCycler.from_url(srv.url) as cyc:
            ch = cyc.channel(0)
            await ch.set_limits(LIMITS)
            await ch.start_block(1, cycle_block(0, 1.0, every_s=0.05))
            seqs: list[int] = []
            for _ in range(6):
                await asyncio.sleep(0.1)
                batch = await ch.read_records(seqs[-1] if seqs else 0)
                seqs.extend(int(s) for s in batch.seq)
            # every record so far (the block goes on: there may be newer ones by now)
            whole = await ch.read_records(0)
            every = [int(s) for s in whole.seq]
            times = [float(t) for t in whole.time_s]
            running = (await ch.status()).state
            await ch.safe_state()
            after = (await ch.status()).state
            module = type(asyncio.get_running_loop()).__module__
            return module, seqs, every, times, running, after

    module, seqs, every, times, running, after = run_real_time(main())
    assert module.startswith(loop)
    assert len(seqs) >= 5  # about 0.6 s of records every 0.05 s
    assert seqs == every[: len(seqs)]  # each read once, in order, none skipped
    assert times == sorted(times)
    assert running == ChannelState.running
    assert after != ChannelState.running
