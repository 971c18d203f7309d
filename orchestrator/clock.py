"""One injectable clock for all waiting.

On hardware the clock is the real one. On a simulated station it is *virtual*: an asyncio
event loop whose ``time()`` is simulated and which, whenever every task is waiting for a
timer (no I/O ready, no worker thread busy), jumps straight to the next timer. Everything
that waits with ``asyncio.sleep``, ``asyncio.timeout`` or ``loop.time()`` - the executor,
drivers' deadlines, and simulators served in the same process - shares that clock without
knowing it, so months of protocol run in seconds and a simulator's physics and the
driver's deadlines can never drift apart.

Pseudo-terminals need one more look before a jump. Bytes written to one end of a pty
reach the other end through a kernel worker; epoll (asyncio's selector) learns of them
only once that worker has run, which on a loaded machine can be milliseconds later, so an
idle-looking loop would jump past a driver's deadline with a reply still in the kernel.
``poll()`` on a terminal first waits for that worker (the tty line discipline flushes its
pending input before it answers), so before each jump the selector polls the terminals
registered with it: no time passes while bytes are on their way, however busy the
machine is.

Durations are always measured on the loop's monotonic time; the wall clock is only used
to stamp records (``Clock.wall()``), so a wall-clock jump cannot stretch a step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import os
import select
import selectors
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar, TypeVarTuple

__all__ = [
    "LONG_RUN_GC_THRESHOLDS",
    "Clock",
    "EventLoopChoiceError",
    "VirtualTimeLoop",
    "long_run_collector",
    "new_virtual_loop",
    "real_time_loop_factory",
    "run_real_time",
    "run_virtual",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _JumpingSelector(selectors.BaseSelector):
    """Wraps a real selector; when nothing is ready and a timer is due later, jumps time
    (after the terminals among its descriptors have had their say: see the module)."""

    def __init__(self, loop: VirtualTimeLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real
        self._ttys: dict[int, selectors.SelectorKey] = {}
        self._tty_poll = select.poll()

    def _track(self, key: selectors.SelectorKey) -> selectors.SelectorKey:
        self._untrack(key.fd)
        is_tty = False
        with contextlib.suppress(OSError):
            is_tty = os.isatty(key.fd)
        if is_tty:
            self._ttys[key.fd] = key
            mask = (select.POLLIN if key.events & selectors.EVENT_READ else 0) | (
                select.POLLOUT if key.events & selectors.EVENT_WRITE else 0
            )
            self._tty_poll.register(key.fd, mask)
        return key

    def _untrack(self, fd: int) -> None:
        if self._ttys.pop(fd, None) is not None:
            self._tty_poll.unregister(fd)

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._track(self._real.register(fileobj, events, data))

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        self._untrack(key.fd)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._track(self._real.modify(fileobj, events, data))

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._ttys.clear()
        self._real.close()

    def _terminals_ready(self) -> list[tuple[selectors.SelectorKey, int]]:
        """Terminals with bytes (or room) once the kernel has delivered what is on its
        way: ``poll()`` waits for a terminal's pending input to be flushed."""
        if not self._ttys:
            return []
        ready = []
        for fd, revents in self._tty_poll.poll(0):
            key = self._ttys.get(fd)
            if key is None:
                continue
            events = 0
            if revents & (select.POLLIN | select.POLLHUP | select.POLLERR):
                events |= selectors.EVENT_READ
            if revents & (select.POLLOUT | select.POLLHUP | select.POLLERR):
                events |= selectors.EVENT_WRITE
            if events & key.events:
                ready.append((key, events & key.events))
        return ready

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        loop = self._loop
        if loop.busy_threads > 0 or timeout is None:
            # A worker thread will wake us through the self-pipe, or only I/O can: wait
            # for real, briefly when a timer is pending so we can jump if nothing comes.
            real_timeout = timeout if timeout is None else min(timeout, 0.002)
            ready = self._real.select(real_timeout)
            if ready or timeout is None or loop.busy_threads > 0:
                return ready
        elif loop.grace_s > 0:
            # A socket written by a thread of another process may take a moment.
            ready = self._real.select(loop.grace_s)
            if ready:
                return ready
        ready = self._terminals_ready()
        if ready:
            return ready
        assert timeout is not None
        loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time that jumps to the next timer when idle."""

    def __init__(self, start: float = 0.0, grace_s: float = 0.0) -> None:
        real = selectors.DefaultSelector()
        self._now = start
        self.busy_threads = 0
        self.grace_s = grace_s
        self.jumps = 0
        super().__init__(selector=_JumpingSelector(self, real))
        self._clock_resolution = 1e-6

    def time(self) -> float:
        return self._now

    def advance(self, dt: float) -> None:
        if dt <= 0:
            return
        target = self._now + dt
        # Land exactly on the next timer: at large times float rounding could otherwise
        # leave it a hair in the future for ever.
        scheduled = getattr(self, "_scheduled", None)
        if scheduled:
            target = max(target, scheduled[0].when())
        self._now = target
        self.jumps += 1

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[*Ts], T],
        *args: *Ts,
    ) -> asyncio.Future[T]:
        fut = super().run_in_executor(executor, func, *args)
        self.busy_threads += 1

        def _done(_: Any) -> None:
            self.busy_threads -= 1

        fut.add_done_callback(_done)
        return fut


def new_virtual_loop(grace_s: float = 0.0) -> VirtualTimeLoop:
    return VirtualTimeLoop(grace_s=grace_s)


def run_virtual(coro: Coroutine[Any, Any, T], *, grace_s: float = 0.0) -> T:
    """Run ``coro`` to completion on a fresh virtual-time loop."""
    with asyncio.Runner(loop_factory=lambda: new_virtual_loop(grace_s)) as runner:
        return runner.run(coro)


EVENT_LOOP_ENV = "LABRIG_EVENT_LOOP"


class EventLoopChoiceError(ValueError):
    """``LABRIG_EVENT_LOOP`` names a loop that is not known or not installed."""


def real_time_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop real-time runs use: uvloop where it is installed (a dependency on
    Linux and macOS; a station of a thousand channels spends a large share of its CPU in
    the loop itself), asyncio's own elsewhere (Windows) or when ``LABRIG_EVENT_LOOP``
    says ``asyncio``. Simulated time always uses :class:`VirtualTimeLoop`."""
    choice = os.environ.get(EVENT_LOOP_ENV, "").strip().lower()
    if choice not in ("", "uvloop", "asyncio"):
        raise EventLoopChoiceError(f"{EVENT_LOOP_ENV}={choice!r}: expected 'uvloop' or 'asyncio'")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise EventLoopChoiceError(
                    f"{EVENT_LOOP_ENV}=uvloop, but uvloop is not installed"
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_real_time(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh real-time loop (see
    :func:`real_time_loop_factory`)."""
    try:
        factory = real_time_loop_factory()
    except EventLoopChoiceError:
        coro.close()
        raise
    with long_run_collector(), asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# The cyclic garbage collector's thresholds while a real-time run is going. A station of
# a thousand channels holds a few hundred thousand long-lived objects (runs, protocols,
# connections) and makes thousands of short-lived ones a second (one request, one batch of
# records and one reading per collection); with CPython's default (a young collection
# every 700 net allocations, an older one every 10 of those) the collector took several
# per cent of a core and its full collections stopped the control loop for 0.3 s at a
# time. Nearly everything short-lived is freed by reference counting; cycles among it
# are few and are still collected, only less often.
LONG_RUN_GC_THRESHOLDS = (20_000, 20, 20)

_collector_lock = threading.Lock()
_collector_users = 0
_collector_saved: tuple[int, ...] | None = None


@contextlib.contextmanager
def long_run_collector() -> Iterator[None]:
    """:data:`LONG_RUN_GC_THRESHOLDS` while inside (nested or from several threads: the
    first in sets them, the last out puts back what was there)."""
    global _collector_users, _collector_saved
    with _collector_lock:
        if _collector_users == 0:
            _collector_saved = gc.get_threshold()
            gc.set_threshold(*LONG_RUN_GC_THRESHOLDS)
        _collector_users += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_users -= 1
            if _collector_users == 0 and _collector_saved is not None:
                gc.set_threshold(*_collector_saved)
                _collector_saved = None


class Clock:
    """Time for one process: monotonic seconds from the running loop, and a wall clock.

    ``now()`` is the loop's monotonic time (virtual on a virtual loop). ``wall()`` is
    seconds since the Unix epoch: real on hardware; on a virtual loop, the real time at
    which the clock was made plus the simulated time elapsed since.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        # the loop running now unless one is given; kept, since its time is the clock's
        # (and asking for the running loop costs a system call on every read)
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self.virtual = isinstance(self._loop, VirtualTimeLoop)
        self._t0 = self._loop.time()
        self._wall0 = time.time()

    def now(self) -> float:
        return self._loop.time()

    def elapsed(self) -> float:
        return self.now() - self._t0

    def wall(self) -> float:
        if self.virtual:
            return self._wall0 + (self.now() - self._t0)
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))
