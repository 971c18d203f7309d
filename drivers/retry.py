"""Retry with backoff: the one place where labrig repeats an operation that failed.

::

    policy = Retry(on=InstrumentTimeout, attempts=3, backoff=Backoff(0.1, 2.0, 10.0))
    reply = await policy.call(lambda: link.query(b"*IDN?\\n"))

An operation is tried; if it raises one of the ``on`` errors (and ``when`` agrees), the
policy waits ``backoff.delay(k)`` and tries again, until it succeeds, ``attempts`` tries
have failed, or the next try would start after ``deadline``. Giving up re-raises the last
error unchanged (its type is the caller's contract); :attr:`Retry.failures` says how many
tries failed. Cancellation is never retried: it goes straight through, also while waiting.

Time is the running loop's clock by default, so on the virtual clock of a dry run the
waits take no real time and deadlines are simulated ones; ``clock`` and ``sleep`` can be
injected (a sleep that returns early when a service stops, for example).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["NO_WAIT", "Backoff", "Retry"]

T = TypeVar("T")
ErrorTypes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between tries: ``first_s * factor**k`` capped at ``max_s``.

    ``jitter`` stretches each wait by a random fraction up to itself (``1.0``: up to
    double), still capped, so many clients that lost one server do not return in step.
    """

    first_s: float = 0.1
    factor: float = 2.0
    max_s: float = 10.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("first_s", "factor", "max_s", "jitter"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Backoff.{name} must be finite and >= 0, got {value}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after the ``attempt``-th failure (0-based)."""
        base = min(self.max_s, self.first_s * self.factor**attempt)
        if self.jitter > 0:
            u = (rng if rng is not None else random).random()
            base = min(self.max_s, base * (1.0 + self.jitter * u))
        return base


#: Try again at once (a resynchronised link, a re-sent idempotent command).
NO_WAIT = Backoff(first_s=0.0, factor=1.0, max_s=0.0)


class Retry:
    """A retry policy; :meth:`call` runs an operation under it.

    - ``on``: the errors worth another try (anything else goes straight through);
    - ``when``: a further test of such an error (False: give up at once);
    - ``attempts``: at most this many tries (None: no limit);
    - ``deadline``: absolute clock time after which no try starts, or ``within_s``
      seconds from the start of :meth:`call` (None: no limit);
    - ``on_retry(error, failures, wait_s)``: called before each wait (logging, counters).

    One policy object may be reused; :meth:`reset` (also from inside the operation, e.g.
    once a connection is up) starts the backoff from the first wait again.
    """

    def __init__(
        self,
        *,
        on: ErrorTypes = Exception,
        when: Callable[[BaseException], bool] | None = None,
        attempts: int | None = None,
        deadline: float | None = None,
        within_s: float | None = None,
        backoff: Backoff | None = None,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if attempts is not None and attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        if deadline is not None and within_s is not None:
            raise ValueError("give a deadline or within_s, not both")
        self.on = on
        self.when = when
        self.attempts = attempts
        self.deadline = deadline
        self.within_s = within_s
        self.backoff = backoff if backoff is not None else Backoff()
        self.on_retry = on_retry
        self._clock = clock
        self._sleep = sleep if sleep is not None else asyncio.sleep
        self._rng = rng
        self.failures = 0

    def reset(self) -> None:
        """Forget the failures so far (the next wait is the first one again)."""
        self.failures = 0

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``await operation()`` until it succeeds or the policy gives up (see class)."""
        end = math.inf
        if self.deadline is not None:
            end = self.deadline
        elif self.within_s is not None:
            end = self._now() + self.within_s
        self.failures = 0
        while True:
            try:
                return await operation()
            except asyncio.CancelledError:
                raise
            except self.on as exc:
                if self.when is not None and not self.when(exc):
                    raise
                self.failures += 1
                if self.attempts is not None and self.failures >= self.attempts:
                    raise
                wait = self.backoff.delay(self.failures - 1, self._rng)
                if self._now() + wait >= end:
                    raise
                if self.on_retry is not None:
                    self.on_retry(exc, self.failures, wait)
            await self._sleep(wait)
