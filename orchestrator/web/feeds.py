"""Fan-out of live changes to the browsers, batched and coalesced per browser.

Every browser on the lab page holds a :class:`LabFeed`: a set of row keys changed since it
last sent an update. A message marks keys in every feed (a set insert); the browser's
stream wakes, waits one batch period so that more changes gather, and sends the rows of
all keys at once. A slow browser therefore never makes memory grow: it gets fewer,
larger batches with the newest values. A run page holds a :class:`RunFeed`, which keeps
the run's new readings and events up to a bound (past it the page is told to reload).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from .model import Update

__all__ = ["Hub", "LabFeed", "RunFeed"]

_MAX_RUN_ITEMS = 20_000


class LabFeed:
    """Keys of the rows changed since the last :meth:`take`."""

    def __init__(self) -> None:
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    def mark(self, keys: tuple[str, ...] | set[str]) -> None:
        self._dirty.update(keys)
        self._wake.set()

    async def wait(self, timeout_s: float) -> bool:
        """True when something changed within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        return self._wake.is_set()

    def take(self) -> set[str]:
        keys, self._dirty = self._dirty, set()
        self._wake.clear()
        return keys


class RunFeed:
    """New readings, events and status changes of one run since the last :meth:`take`."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.points: list[tuple[float, float | None, float | None, float | None]] = []
        self.events: list[dict[str, Any]] = []
        self.status = False
        self.overflow = False
        self._wake = asyncio.Event()

    def push(self, update: Update) -> None:
        if update.telemetry is not None:
            self.points.append(update.telemetry)
        if update.event is not None:
            self.events.append(update.event)
        if update.keys:
            self.status = True
        if len(self.points) + len(self.events) > _MAX_RUN_ITEMS:
            self.points.clear()
            self.events.clear()
            self.overflow = True
        self._wake.set()

    async def wait(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        return self._wake.is_set()

    def take(self) -> dict[str, Any]:
        out = {
            "points": self.points,
            "events": self.events,
            "status": self.status,
            "overflow": self.overflow,
        }
        self.points, self.events = [], []
        self.status = self.overflow = False
        self._wake.clear()
        return out


class Hub:
    """Who listens to what; :meth:`dispatch` hands each update to its listeners."""

    def __init__(self) -> None:
        self._lab: set[LabFeed] = set()
        self._runs: dict[str, set[RunFeed]] = {}
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @property
    def listeners(self) -> int:
        return len(self._lab) + sum(len(s) for s in self._runs.values())

    def dispatch(self, update: Update) -> None:
        if update.keys:
            for feed in self._lab:
                feed.mark(update.keys)
        if update.run_id is not None:
            for run_feed in self._runs.get(update.run_id, ()):
                run_feed.push(update)
        if update.reply is not None:
            fut = self._replies.get(str(update.reply.get("request_id")))
            if fut is not None and not fut.done():
                fut.set_result(update.reply)

    def mark_all(self, keys: tuple[str, ...]) -> None:
        if keys:
            for feed in self._lab:
                feed.mark(keys)

    @contextlib.contextmanager
    def lab_feed(self) -> Iterator[LabFeed]:
        feed = LabFeed()
        self._lab.add(feed)
        try:
            yield feed
        finally:
            self._lab.discard(feed)

    @contextlib.contextmanager
    def run_feed(self, run_id: str) -> Iterator[RunFeed]:
        feed = RunFeed(run_id)
        self._runs.setdefault(run_id, set()).add(feed)
        try:
            yield feed
        finally:
            feeds = self._runs.get(run_id)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._runs[run_id]

    @contextlib.contextmanager
    def reply_waiter(self, request_id: str) -> Iterator[asyncio.Future[dict[str, Any]]]:
        """A future resolved by the ``cmd/reply`` carrying ``request_id``."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = fut
        try:
            yield fut
        finally:
            self._replies.pop(request_id, None)
            fut.cancel()
