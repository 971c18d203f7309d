"""BioLogic faults: a lost link mid-PEIS and mid-block, a stuck DLL call.

The instrument keeps measuring and buffering while the link is down; the driver
reconnects within its grace time and reads on, so no record or point is lost or read
twice. Past the grace time the run gets :class:`LinkLost` and, once the instrument can
be reached, the channel is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import numpy as np
import pytest

from labrig.drivers.biologic import LinkLost, open_biologic
from labrig.drivers.capabilities import ChannelState, EisRequest
from labrig.simulators.biologic import simulate_biologic
from tests.helpers import run_virtual_strict

from .biologic_support import LIMITS, cell_impedance, formation_block, log_freqs, rig

LOOPS = 10


async def _drop_later(lib: object, at_s: float, for_s: float | None) -> None:
    await asyncio.sleep(at_s)
    lib.drop_link(for_s)  # type: ignore[attr-defined]


def test_link_dropped_mid_peis_is_survived_10_of_10() -> None:
    rng = random.Random(20261203)
    freqs = log_freqs(7e6, 0.01, 8)

    async def one(seed: int, at_s: float, for_s: float) -> tuple[bool, int]:
        loop = asyncio.get_running_loop()
        async with rig(seed=seed, eis_poll_s=2.0, backoff_s=0.5) as r:
            t0 = loop.time()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_drop_later(r.sim.library, at_s, for_s))
                res = await r.ch.measure_eis(EisRequest(freqs, amplitude_V=0.007))
            z = res.z_real_ohm + 1j * res.z_imag_ohm
            ref = cell_impedance(r.engine, freqs, t0)
            ok = (
                len(res.frequency_Hz) == len(freqs)
                and bool(np.allclose(res.frequency_Hz, freqs, rtol=1e-6))  # each point once
                and float(np.max(np.abs(z - ref) / np.abs(ref))) < 1e-2
            )
            return ok, r.ch.device.reconnects

    async def main() -> list[tuple[bool, int]]:
        out = []
        for k in range(LOOPS):
            # the sweep takes ~10 min: drop somewhere in it, for up to 40 s
            out.append(await one(k, rng.uniform(1.0, 500.0), rng.uniform(1.0, 40.0)))
        return out

    results = run_virtual_strict(main())
    assert [ok for ok, _ in results] == [True] * LOOPS
    assert all(n >= 1 for _, n in results)  # every run did lose and regain the link


def test_link_dropped_mid_block_is_survived_10_of_10_with_every_record_once() -> None:
    rng = random.Random(7)

    async def one(seed: int, at_s: float, for_s: float) -> bool:
        loop = asyncio.get_running_loop()
        async with rig(seed=seed, backoff_s=0.5, poll_s=120.0) as r:
            await r.ch.set_limits(LIMITS)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_drop_later(r.sim.library, at_s, for_s))
                await r.ch.start_block(1, formation_block(10))
                res = await r.ch.wait_block(poll_s=1800)
            batch = await r.ch.read_records(0)
            # what the instrument recorded, every record of it, in its order
            made = r.engine.records_after(0, loop.time())
            same = (
                len(batch) == made["seq"].size
                and batch.seq.tolist() == list(range(1, len(batch) + 1))
                and np.array_equal(batch.voltage_V, made["voltage_V"].astype(np.float32))
                and bool(np.all(np.diff(batch.time_s) >= 0))
            )
            return (
                res.state == ChannelState.done
                and [e.reason for e in res.steps] == ["voltage", "time", "current"]
                and same
                and r.ch.device.reconnects >= 1
            )

    async def main() -> list[bool]:
        # the block takes ~4 h: drop anywhere in it, for up to 50 s
        return [
            await one(k, rng.uniform(10.0, 14000.0), rng.uniform(1.0, 50.0)) for k in range(LOOPS)
        ]

    assert run_virtual_strict(main()) == [True] * LOOPS


def test_a_link_gone_for_good_is_a_typed_error_then_the_safe_state() -> None:
    async def main() -> None:
        async with rig(backoff_s=1.0, reconnect_s=30.0, poll_s=120.0) as r:
            await r.ch.set_limits(LIMITS)
            await r.ch.start_block(1, formation_block(10))
            await asyncio.sleep(1000.0)
            r.sim.library.drop_link(None)
            res = await r.ch.wait_block(poll_s=600)
            assert res.state == ChannelState.fault and "LinkLost" in (res.fault or "")
            with pytest.raises(LinkLost, match="not back within 30 s"):
                await r.ch.measure_eis(EisRequest(log_freqs(1e5, 1.0, 4), amplitude_V=0.01))
            r.sim.library.restore_link()
            await r.ch.safe_state()
            assert not r.sim.instrument.channels[0].running

    run_virtual_strict(main())


async def test_a_stuck_get_data_never_hangs_the_run() -> None:
    """On the real clock: a BL_GetData that does not return is abandoned at its deadline;
    the library fails fast while it is stuck, and works again once the call returns."""
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(simulate_biologic(1))
        ch = await stack.enter_async_context(
            open_biologic(
                model="VMP-300",
                address=sim.address,
                library=sim.library,
                call_timeout_s=0.3,
                reconnect_s=1.0,
                backoff_s=0.2,
                eis_poll_s=0.05,
            )
        )
        sim.library.slow_get_data(30.0)
        with pytest.raises(LinkLost, match=r"did not return within 0\.3 s|not back within"):
            await ch.measure_eis(EisRequest(log_freqs(1e5, 1e3, 3), amplitude_V=0.01))
        sim.library.release()
        await ch.safe_state()
        assert not sim.instrument.channels[0].running
