"""Fair (FIFO) booking of shared instruments, with a predicted timeline.

A shared instrument (one potentiostat behind a multiplexer serving many cells' EIS) is a
*resource* named by a string (``"impedance:eis/0"``). A run enters
``booker.booking(run_id, expected_s)(resource)`` around every use of it; runs take turns
in arrival order. Holding the booking is the only way to command the instrument, so two
runs can never command it at once. Waits are counted here (and the executor records
each of them as a ``wait`` event of the run).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Booker", "BookingSlot", "BookingStats", "ResourceTimeline"]


@dataclass(frozen=True, slots=True)
class BookingSlot:
    """One run's place on a resource: holding it now, or queued for it.

    Times are the event loop's monotonic seconds; ``expected_start``/``expected_end`` are
    predictions from the expected durations of those ahead.
    """

    run_id: str
    holding: bool
    since: float
    expected_s: float | None
    expected_start: float | None
    expected_end: float | None


@dataclass(frozen=True, slots=True)
class ResourceTimeline:
    """The holder of one resource and its queue, in the order they will get it."""

    resource: str
    slots: tuple[BookingSlot, ...]

    def to_dict(self, now: float) -> dict[str, Any]:
        """JSON-ready, with times relative to ``now`` (seconds from now)."""

        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - now, 3)

        return {
            "resource": self.resource,
            "slots": [
                {
                    "run_id": s.run_id,
                    "holding": s.holding,
                    "since_s": rel(s.since),
                    "expected_s": s.expected_s,
                    "expected_start_s": rel(s.expected_start),
                    "expected_end_s": rel(s.expected_end),
                }
                for s in self.slots
            ],
        }


@dataclass(slots=True)
class BookingStats:
    """Totals per resource since the booker was made."""

    bookings: int = 0
    waits: int = 0
    waited_s: float = 0.0
    max_wait_s: float = 0.0


@dataclass(slots=True)
class _Waiter:
    run_id: str
    expected_s: float | None
    since: float
    granted: asyncio.Future[None]


@dataclass(slots=True)
class _Resource:
    holder: _Waiter | None = None
    queue: collections.deque[_Waiter] = field(default_factory=collections.deque)
    stats: BookingStats = field(default_factory=BookingStats)


class Booker:
    """Hands out shared resources one run at a time, first come first served."""

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self._now = now
        self._resources: dict[str, _Resource] = {}

    def _time(self) -> float:
        return self._now() if self._now is not None else asyncio.get_running_loop().time()

    def booking(
        self, run_id: str, expected_s: float | None = None
    ) -> Callable[[str], contextlib.AbstractAsyncContextManager[None]]:
        """The ``RunBindings.booking`` callable for one run."""

        def book(resource: str) -> contextlib.AbstractAsyncContextManager[None]:
            return self.hold(resource, run_id, expected_s)

        return book

    @contextlib.asynccontextmanager
    async def hold(
        self, resource: str, run_id: str, expected_s: float | None = None
    ) -> AsyncIterator[None]:
        """Wait for ``resource`` (FIFO), hold it for the body, then pass it on."""
        res = self._resources.setdefault(resource, _Resource())
        loop = asyncio.get_running_loop()
        me = _Waiter(run_id, expected_s, self._time(), loop.create_future())
        if res.holder is None and not res.queue:
            res.holder = me
            me.granted.set_result(None)
        else:
            res.queue.append(me)
            try:
                await me.granted
            except BaseException:
                # cancelled while queued, or granted in the same turn as the cancel
                if me in res.queue:
                    res.queue.remove(me)
                elif res.holder is me:
                    self._pass_on(res)
                raise
            waited = self._time() - me.since
            res.stats.waits += 1
            res.stats.waited_s += waited
            res.stats.max_wait_s = max(res.stats.max_wait_s, waited)
        res.stats.bookings += 1
        me.since = self._time()
        try:
            yield
        finally:
            self._pass_on(res)

    def _pass_on(self, res: _Resource) -> None:
        res.holder = None
        while res.queue:
            nxt = res.queue.popleft()
            if nxt.granted.done():  # its waiter was cancelled
                continue
            res.holder = nxt
            nxt.granted.set_result(None)
            return

    def holder(self, resource: str) -> str | None:
        """The run holding ``resource`` now, if any."""
        res = self._resources.get(resource)
        return res.holder.run_id if res is not None and res.holder is not None else None

    def stats(self) -> dict[str, BookingStats]:
        return {name: res.stats for name, res in self._resources.items()}

    def timeline(self) -> list[ResourceTimeline]:
        """Who holds each resource and who will get it next, with predicted times.

        A prediction needs the expected duration of everyone ahead; after the first
        unknown duration the queue's times are unknown too (``None``).
        """
        now = self._time()
        out: list[ResourceTimeline] = []
        for name, res in sorted(self._resources.items()):
            slots: list[BookingSlot] = []
            t: float | None = now
            if res.holder is not None:
                h = res.holder
                end = None if h.expected_s is None else max(now, h.since + h.expected_s)
                slots.append(BookingSlot(h.run_id, True, h.since, h.expected_s, h.since, end))
                t = end
            for w in res.queue:
                if w.granted.done():
                    continue
                start = t
                end = None if start is None or w.expected_s is None else start + w.expected_s
                slots.append(BookingSlot(w.run_id, False, w.since, w.expected_s, start, end))
                t = end
            if slots:
                out.append(ResourceTimeline(name, tuple(slots)))
        return out
