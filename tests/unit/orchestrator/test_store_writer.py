"""The store writer: jobs run in order on the shared storage threads, with no task or
future per run, and the end of ``running()`` waits for every queued job."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time

from labrig.orchestrator.clock import run_virtual
from labrig.orchestrator.store.writer import Writer


def test_many_writers_keep_their_order_and_start_no_task() -> None:
    done: dict[int, list[int]] = {}
    threads: set[str] = set()

    def job(w: int, i: int) -> None:
        threads.add(threading.current_thread().name)
        done.setdefault(w, []).append(i)

    async def main() -> int:
        writers = [Writer(max_rows_waiting=10**9) for _ in range(64)]
        before = len(asyncio.all_tasks())
        async with contextlib.AsyncExitStack() as stack:
            for w in writers:
                await stack.enter_async_context(w.running())
            most = len(asyncio.all_tasks()) - before
            for i in range(50):
                for n, w in enumerate(writers):
                    w.submit(functools.partial(job, n, i), 1)
                await asyncio.sleep(0)
        assert all(w.rows_waiting == 0 and not w.busy for w in writers)
        return most

    extra_tasks = asyncio.run(main())
    assert extra_tasks == 0  # one task per run would drain them otherwise
    assert done == {n: list(range(50)) for n in range(64)}
    assert threads == {"store-lane"}


def test_virtual_time_stands_still_while_a_write_is_under_way() -> None:
    seen: list[float] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        w = Writer(max_rows_waiting=10)
        async with w.running():
            t0 = loop.time()

            def slow() -> None:
                time.sleep(0.05)  # a slow disk: the loop must not jump meanwhile
                seen.append(loop.time())

            w.submit(slow)
            await asyncio.sleep(3600)
        return t0

    t0 = run_virtual(main())
    assert seen == [t0]


def test_a_failed_job_is_kept_for_the_run() -> None:
    async def main() -> Writer:
        w = Writer(max_rows_waiting=10)
        async with w.running():

            def fail() -> None:
                raise OSError("disk full")

            w.submit(fail)
        return w

    w = asyncio.run(main())
    assert isinstance(w.error, OSError) and "disk full" in str(w.error)
