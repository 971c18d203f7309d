"""When to collect a block's records: just after the instrument has made one.

A cycler records at a steady interval (1 s, 10 s, ...). Collected at arbitrary moments
every ``collect_s``, the newest record reaches storage and telemetry up to one interval
late, and on a station of a thousand channels that interval is what the live view shows.
The :class:`CollectionPacer` learns where the records fall on the run's clock and puts
each collection a little after a record can be read, a whole number of record intervals
after the previous one (about ``collect_s``).

It learns from the collections themselves. Record times are on the run's clock, placed
there by the block's start, so a record dated ``t`` becomes readable at ``t + e`` for
some delay ``e`` (how late the block really started, plus the instrument's own lag). A
collection begun at ``now`` whose newest record is dated ``t`` shows ``e <= now - t``
(give or take the request's trip) and, since the next record was not there yet,
``e > now - t - P``. The pacer aims at ``t + k P + aim``: ``aim`` starts at the first
upper bound, closes in on the lower bound while collections find what they aim at, and
steps back when one comes too early - which is then tried again a moment later.
Drift between the instrument's clock and ours, or a busier host, is followed the same way.

A collection only changes its moment, not what it reads. With no record interval known
yet (fewer than two records seen), or when records stop coming (the block is ending), it
collects every ``collect_s``.
"""

from __future__ import annotations

import math

__all__ = ["CollectionPacer"]

_LAG = 0.01  # aim this fraction of an interval after the estimate
_CREEP = 0.001  # fraction of an interval ``aim`` moves earlier after a collection on time
_BACK = 0.05  # ... and later after one that came too early


class CollectionPacer:
    """Schedules record collections of one block (see the module docstring)."""

    def __init__(self, collect_s: float) -> None:
        self.collect_s = collect_s
        self.interval: float | None = None  # the instrument's record interval, as seen
        self.aim: float | None = None  # collect this long after a record's time
        self.lo = -math.inf  # a lower bound of the delay before a record can be read
        self._newest: float | None = None  # run time of the newest record collected
        self._expected: float | None = None  # the record the next collection aims at
        self._found_edge = False  # a collection came too early: ``aim`` is near ``e``
        self.early = 0  # collections in a row that came before the record aimed at
        self.collections = 0
        self.retries = 0

    def delay(self, now: float) -> float:
        """Seconds from ``now`` (run time) to the next collection."""
        p, newest, aim = self.interval, self._newest, self.aim
        if p is None or newest is None or aim is None or self.early > 2:
            self._expected = None
            return self.collect_s
        if self._expected is None or not self.early:
            self._expected = newest + max(1, round(self.collect_s / p)) * p
        return min(max(0.0, self._expected + aim + _LAG * p - now), 2 * self.collect_s)

    def collected(self, now: float, n: int, first: float = 0.0, last: float = 0.0) -> bool:
        """A collection begun at ``now`` found ``n`` new records dated ``first`` ..
        ``last`` (run time). True when it came too early: another follows shortly, and
        what it found is not worth showing as the newest reading."""
        self.collections += 1
        p = self._learn_interval(n, first, last)
        expected = self._expected
        if n:
            self._newest = last
        if p is None or p <= 0:
            return False
        if expected is not None and (n == 0 or last < expected - p / 2):
            return self._too_early(now, expected, p)
        if n == 0:
            return False  # nothing aimed at (the plain period): nothing learned
        self.early = 0
        d = now - last
        aim = d if self.aim is None else min(self.aim, d)
        if self._found_edge:
            self.aim = aim - _CREEP * p  # creep towards the edge found by a miss
        else:
            # close in quickly on the lower bound until a collection first comes too early
            self.lo = max(self.lo, d - p)
            self.aim = max(self.lo, aim - max(_CREEP * p, 0.5 * (aim - self.lo)))
        return False

    def _learn_interval(self, n: int, first: float, last: float) -> float | None:
        seen: float | None = None
        if n >= 2:
            seen = (last - first) / (n - 1)
        elif n == 1 and self._newest is not None and self.interval and last > self._newest:
            seen = (last - self._newest) / max(1, round((last - self._newest) / self.interval))
        if seen is not None and math.isfinite(seen) and seen > 1e-3:
            self.interval = seen
        return self.interval

    def _too_early(self, now: float, expected: float, p: float) -> bool:
        self.early += 1
        if self.early > 2:
            return False  # records stopped: back to the plain period until they return
        self.retries += 1
        self._found_edge = True
        self.lo = max(self.lo, now - expected)
        base = self.aim if self.aim is not None else now - expected
        self.aim = max(base + _BACK * p, self.lo + _LAG * p)
        return True
