"""A run store's file work, in order: inline, or off the event loop while a task drains it.

Outside :meth:`Writer.running` every job runs at once in the caller (imports, marks,
tests). Inside it, jobs queue up and one task - owned by the context's TaskGroup -
hands everything queued so far to a worker thread as one batch, so the event loop that
every run shares never waits for a write or an fsync (on simulated time that task
writes the batch itself: see :meth:`Writer._drain`). A job that fails is kept in
:attr:`Writer.error`; the store raises it on its next call from the run, which then fails
into its safe state as with any storage failure.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..clock import VirtualTimeLoop

__all__ = ["StorageBehind", "Writer"]

log = logging.getLogger(__name__)

Job = Callable[[], None]


class _Lanes(concurrent.futures.Executor):
    """A few daemon threads shared by every store of the process: each store has at most
    one batch in flight, so its writes stay in order whichever thread runs them. Daemon
    threads, because a run waits for its own writes before it ends."""

    THREADS = 2

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]
        self._work = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._work.put((fut, lambda: fn(*args, **kwargs)))
        with self._lock:
            if len(self._threads) < self.THREADS:
                t = threading.Thread(target=self._serve, name="store-lane", daemon=True)
                t.start()
                self._threads.append(t)
        return fut

    def _serve(self) -> None:
        while True:
            fut, call = self._work.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(call())
            except BaseException as exc:  # handed to the awaiting task
                fut.set_exception(exc)


_LANES = _Lanes()


class StorageBehind(OSError):
    """Rows wait for the disk faster than it takes them (the run cannot go on safely)."""


class Writer:
    def __init__(self, *, max_rows_waiting: int) -> None:
        self.max_rows_waiting = max_rows_waiting
        self.error: BaseException | None = None
        self.rows_waiting = 0
        self._jobs: collections.deque[tuple[Job, int, bool]] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._stopped = False  # abandoned: nothing more is written

    @property
    def draining(self) -> bool:
        return self._wake is not None

    def submit(self, job: Job, rows: int = 0, *, keep: bool = False) -> None:
        """Run ``job`` (inline) or queue it behind the ones before (while draining).
        ``keep``: written even after :meth:`stop` (event lines, which a killed process
        would have left in its file buffer for the system to write)."""
        if self._stopped and not keep:
            return
        if self._wake is None:
            job()
            return
        self._jobs.append((job, rows, keep))
        self.rows_waiting += rows
        self._wake.set()
        if self.rows_waiting > self.max_rows_waiting and self.error is None:
            self.error = StorageBehind(
                f"storage is behind: {self.rows_waiting:,} rows wait for the disk"
            )

    def check(self) -> None:
        """Raise the first failure of a queued job (once the run has it, it stays)."""
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Write nothing more (as if the process had been killed)."""
        self._stopped = True
        kept = [j for j in self._jobs if j[2]]
        self._jobs.clear()
        self._jobs.extend(kept)

    def _run_batch(self, batch: list[tuple[Job, int, bool]]) -> None:
        for job, _rows, keep in batch:
            if self._stopped and not keep:
                continue
            try:
                job()
            except Exception as exc:  # kept for the run: it fails into its safe state
                if self.error is None:
                    self.error = exc
                log.error("storage write failed: %s", exc)

    async def _drain(self) -> None:
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        # On simulated time (dry runs, drills) the clock stands still while a thread
        # works - it must not jump past a write in flight - so each hand-over would make
        # the run wait for real; nothing real-time is controlled there: the batches are
        # written by this task, in the same order, between the run's own steps.
        simulated = isinstance(loop, VirtualTimeLoop)
        while True:
            if (self._stopped or self._closing) and not self._jobs:
                return
            if not self._jobs:
                await wake.wait()
                wake.clear()
                continue
            batch = list(self._jobs)
            self._jobs.clear()
            if simulated:
                self._run_batch(batch)
                await asyncio.sleep(0)  # the run's turn before the next batch
            else:
                await loop.run_in_executor(_LANES, self._run_batch, batch)
            self.rows_waiting -= sum(rows for _job, rows, _keep in batch)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Drain jobs off the event loop until the context ends; its end waits for every
        queued job (the run's final writes) unless the store was abandoned."""
        self._wake = asyncio.Event()
        self._closing = False
        failed: Exception | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                drain = tg.create_task(self._drain(), name="store-writer")
                try:
                    yield
                except Exception as exc:  # the run's own error: raised as it is, below
                    failed = exc
                finally:
                    self._closing = True
                    self._wake.set()
                    # also when the run was cancelled: its final writes still happen
                    await asyncio.shield(drain)
        finally:
            self._wake = None
        if failed is not None:
            raise failed
