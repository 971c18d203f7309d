"""A run store's file work, in order: inline, or off the event loop on shared threads.

Outside :meth:`Writer.running` every job runs at once in the caller (imports, marks,
tests). Inside it, jobs queue up in the store's writer, and the writer itself - not a
task per run - is handed to the storage threads the first time a job lands in an empty
queue: a thread takes everything queued so far as one batch, runs it, and hands the
writer back to the shared queue while more jobs wait. So the event loop that every run
shares never waits for a write or an fsync, and queueing a job costs it one lock and a
list append (no task wakes, no future, no call back into the loop per job). A job that
fails is kept in :attr:`Writer.error`; the store raises it on its next call from the
run, which then fails into its safe state as with any storage failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable

from ..clock import VirtualTimeLoop

__all__ = ["StorageBehind", "Writer"]

log = logging.getLogger(__name__)

Job = Callable[[], None]


class _Lanes:
    """A few daemon threads shared by every store of the process. A writer is in the
    queue or on a thread at most once at a time, so its writes stay in order whichever
    thread runs them. Daemon threads, because a run waits for its own writes before it
    ends."""

    THREADS = 2

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[Writer] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def put(self, writer: Writer) -> None:
        self._work.put(writer)
        if len(self._threads) < self.THREADS:
            with self._lock:
                if len(self._threads) < self.THREADS:
                    t = threading.Thread(target=self._serve, name="store-lane", daemon=True)
                    t.start()
                    self._threads.append(t)

    def _serve(self) -> None:
        while True:
            self._work.get()._run_queued()


_LANES = _Lanes()


class StorageBehind(OSError):
    """Rows wait for the disk faster than it takes them (the run cannot go on safely)."""


class Writer:
    def __init__(self, *, max_rows_waiting: int) -> None:
        self.max_rows_waiting = max_rows_waiting
        self.error: BaseException | None = None
        self.rows_waiting = 0
        self._jobs: list[tuple[Job, int, bool]] = []
        self._lock = threading.Lock()  # _jobs, rows_waiting, _busy, _idle
        self._busy = False  # queued for, or on, a storage thread
        self._idle: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._active = False
        # a virtual-time loop must not jump while a storage thread writes (as for its
        # executor threads): each busy spell of the writer counts as one busy thread
        self._virtual: VirtualTimeLoop | None = None
        self._stopped = False  # abandoned: nothing more is written

    @property
    def draining(self) -> bool:
        return self._active

    def submit(self, job: Job, rows: int = 0, *, keep: bool = False) -> None:
        """Run ``job`` (inline) or queue it behind the ones before (while draining).
        ``keep``: written even after :meth:`stop` (event lines, which a killed process
        would have left in its file buffer for the system to write)."""
        if self._stopped and not keep:
            return
        if not self._active:
            job()
            return
        with self._lock:
            self._jobs.append((job, rows, keep))
            self.rows_waiting += rows
            waiting = self.rows_waiting
            start = not self._busy
            self._busy = True
        if start:
            if self._virtual is not None:
                self._virtual.busy_threads += 1
            _LANES.put(self)
        if waiting > self.max_rows_waiting and self.error is None:
            self.error = StorageBehind(f"storage is behind: {waiting:,} rows wait for the disk")

    def check(self) -> None:
        """Raise the first failure of a queued job (once the run has it, it stays)."""
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Write nothing more (as if the process had been killed)."""
        self._stopped = True
        with self._lock:
            self._jobs = [j for j in self._jobs if j[2]]

    def _run_queued(self) -> None:
        """On a storage thread: run one batch, then requeue the writer or go idle."""
        with self._lock:
            batch, self._jobs = self._jobs, []
        for job, _rows, keep in batch:
            if self._stopped and not keep:
                continue
            try:
                job()
            except Exception as exc:  # kept for the run: it fails into its safe state
                if self.error is None:
                    self.error = exc
                log.error("storage write failed: %s", exc)
        with self._lock:
            self.rows_waiting -= sum(rows for _job, rows, _keep in batch)
            more = bool(self._jobs)
            idle, self._busy = None, more
            if not more:
                idle, self._idle = self._idle, None
        if more:
            _LANES.put(self)  # behind the other writers waiting: each gets its turn
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            if self._virtual is not None:
                self._virtual.call_soon_threadsafe(_thread_done, self._virtual)
            if idle is not None:
                idle[0].call_soon_threadsafe(_resolve, idle[1])

    @property
    def busy(self) -> bool:
        """A job is queued or being written (after :meth:`stop`, once this is False the
        disk stays as a killed process would have left it)."""
        return self._busy

    async def _wait_idle(self) -> None:
        with self._lock:
            if not self._busy:
                return
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            self._idle = (loop, done)
        await asyncio.shield(done)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Write jobs off the event loop until the context ends; its end waits for every
        queued job (the run's final writes) unless the store was abandoned."""
        loop = asyncio.get_running_loop()
        self._virtual = loop if isinstance(loop, VirtualTimeLoop) else None
        self._active = True
        try:
            yield
        finally:
            # also when the run was cancelled: its final writes still happen, on the
            # storage threads, which need nothing from this task to go on
            await self._wait_idle()
            self._active = False


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _thread_done(loop: VirtualTimeLoop) -> None:
    loop.busy_threads -= 1
