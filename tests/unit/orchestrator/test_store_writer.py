"""Where a run store's file work happens while it drains: on a worker thread on real
time (the event loop goes on while a write blocks), in the drain task on simulated time
(a dry run never waits for a thread hop); the same batches, in the same order."""

from __future__ import annotations

import asyncio
import threading

from labrig.orchestrator.clock import run_virtual
from labrig.orchestrator.store.writer import Writer


def test_on_real_time_a_blocked_write_does_not_hold_the_event_loop() -> None:
    release = threading.Event()
    ran_on: list[int] = []
    order: list[str] = []

    def slow_job() -> None:
        ran_on.append(threading.get_ident())
        # the loop must set this while the job runs: a job on the loop would hang here
        assert release.wait(30), "the event loop was held by the write"
        order.append("slow")

    async def main() -> None:
        w = Writer(max_rows_waiting=1000)
        async with w.running():
            w.submit(slow_job, 1)
            w.submit(lambda: order.append("next"), 1)
            await asyncio.sleep(0.01)  # the loop turns while the job waits
            release.set()
        assert w.rows_waiting == 0 and w.error is None

    asyncio.run(main())
    assert ran_on and ran_on[0] != threading.get_ident()
    assert order == ["slow", "next"]


def test_on_simulated_time_batches_are_written_by_the_drain_task_in_order() -> None:
    ran_on: list[int] = []
    order: list[int] = []

    async def main() -> None:
        w = Writer(max_rows_waiting=1000)
        async with w.running():
            for k in range(5):
                w.submit(lambda k=k: (ran_on.append(threading.get_ident()), order.append(k)))
                await asyncio.sleep(3600.0)  # simulated: an hour passes at once
        assert w.rows_waiting == 0

    run_virtual(main())
    assert order == [0, 1, 2, 3, 4]
    assert set(ran_on) == {threading.get_ident()}
