"""The retry helper: backoff sequence, attempts, deadline, filters, cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest

from labrig.drivers.capabilities import InstrumentProtocolError, InstrumentTimeout
from labrig.drivers.retry import NO_WAIT, Backoff, Retry
from tests.helpers import run_virtual_strict


class FakeTime:
    """An injected clock and sleep: sleeping moves the clock, nothing else does."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``; counts calls."""

    def __init__(self, failures: int, error: type[Exception] = InstrumentTimeout) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "ok"


def test_backoff_grows_by_its_factor_up_to_its_cap() -> None:
    b = Backoff(first_s=0.1, factor=2.0, max_s=1.0)
    assert [b.delay(k) for k in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert [NO_WAIT.delay(k) for k in range(3)] == [0.0, 0.0, 0.0]


def test_jitter_stretches_each_wait_within_bounds_and_replays_from_its_seed() -> None:
    b = Backoff(first_s=1.0, factor=2.0, max_s=5.0, jitter=1.0)
    a = [b.delay(k, random.Random(7)) for k in range(5)]
    assert a == [b.delay(k, random.Random(7)) for k in range(5)]
    for k, d in enumerate(a):
        base = min(5.0, 2.0**k)
        assert base <= d <= min(5.0, 2 * base)


@pytest.mark.parametrize("field", ["first_s", "factor", "max_s", "jitter"])
def test_backoff_refuses_negative_or_infinite_settings(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**{field: -1.0})
    with pytest.raises(ValueError, match=field):
        Backoff(**{field: float("inf")})


def test_retries_until_success_with_the_backoff_sequence() -> None:
    t = FakeTime()
    seen: list[tuple[str, int, float]] = []
    policy = Retry(
        on=InstrumentTimeout,
        backoff=Backoff(0.5, 3.0, 10.0),
        clock=t.clock,
        sleep=t.sleep,
        on_retry=lambda exc, n, wait: seen.append((str(exc), n, wait)),
    )
    op = Flaky(3)
    assert asyncio.run(policy.call(op)) == "ok"
    assert op.calls == 4 and policy.failures == 3
    assert t.slept == [0.5, 1.5, 4.5]
    assert seen == [("failure 1", 1, 0.5), ("failure 2", 2, 1.5), ("failure 3", 3, 4.5)]


def test_gives_up_after_its_attempts_with_the_last_error() -> None:
    t = FakeTime()
    policy = Retry(on=InstrumentTimeout, attempts=3, clock=t.clock, sleep=t.sleep)
    op = Flaky(10)
    with pytest.raises(InstrumentTimeout, match="failure 3"):
        asyncio.run(policy.call(op))
    assert op.calls == 3 and policy.failures == 3
    assert len(t.slept) == 2  # no wait after the last try


def test_no_try_starts_after_the_deadline() -> None:
    """Waits 1, 2, 4 s: tries at 0, 1 and 3 s; the next would start at 7 s, past 5 s."""

    async def main() -> tuple[float, int, int]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        op = Flaky(100)
        policy = Retry(on=InstrumentTimeout, within_s=5.0, backoff=Backoff(1.0, 2.0, 60.0))
        with pytest.raises(InstrumentTimeout, match="failure 3"):
            await policy.call(op)
        return loop.time() - t0, op.calls, policy.failures

    elapsed, calls, failures = run_virtual_strict(main())
    assert elapsed == pytest.approx(3.0)  # on the loop's (virtual) clock
    assert calls == failures == 3


def test_an_absolute_deadline_on_an_injected_clock() -> None:
    t = FakeTime()
    policy = Retry(
        on=InstrumentTimeout, deadline=t.now + 1.0, backoff=Backoff(0.4, 1.0, 0.4),
        clock=t.clock, sleep=t.sleep,
    )  # fmt: skip
    op = Flaky(100)
    with pytest.raises(InstrumentTimeout):
        asyncio.run(policy.call(op))
    assert op.calls == 3 and t.slept == [0.4, 0.4]  # 100.0, 100.4, 100.8; 101.2 is late


def test_other_errors_and_refused_ones_go_straight_through() -> None:
    t = FakeTime()
    policy = Retry(on=InstrumentTimeout, clock=t.clock, sleep=t.sleep)
    op = Flaky(5, error=InstrumentProtocolError)
    with pytest.raises(InstrumentProtocolError):
        asyncio.run(policy.call(op))
    assert op.calls == 1

    picky = Retry(
        on=InstrumentTimeout, when=lambda exc: "1" in str(exc), clock=t.clock, sleep=t.sleep
    )
    op = Flaky(5)
    with pytest.raises(InstrumentTimeout, match="failure 2"):
        asyncio.run(picky.call(op))
    assert op.calls == 2


def test_reset_from_inside_the_operation_starts_the_backoff_over() -> None:
    t = FakeTime()
    policy = Retry(on=InstrumentTimeout, backoff=Backoff(1.0, 2.0, 100.0), clock=t.clock,
                   sleep=t.sleep)  # fmt: skip
    calls = 0

    async def connect_then_lose() -> str:
        nonlocal calls
        calls += 1
        if calls == 4:
            policy.reset()  # "connected": a later loss backs off from the start again
        if calls < 6:
            raise InstrumentTimeout("lost")
        return "ok"

    assert asyncio.run(policy.call(connect_then_lose)) == "ok"
    assert t.slept == [1.0, 2.0, 4.0, 1.0, 2.0]


def test_cancellation_during_the_wait_ends_the_retries() -> None:
    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        op = Flaky(100)
        policy = Retry(on=InstrumentTimeout, backoff=Backoff(10.0, 1.0, 10.0))
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(25.0):
                await policy.call(op)
        return op.calls, loop.time() - t0

    calls, elapsed = run_virtual_strict(main())
    assert calls == 3 and elapsed == pytest.approx(25.0)  # tries at 0, 10, 20; cut at 25


def test_cancellation_inside_the_operation_is_never_retried() -> None:
    async def main() -> int:
        calls = 0

        async def hangs() -> None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(3600.0)

        policy = Retry(on=BaseException, backoff=NO_WAIT)  # even when asked to retry all
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await policy.call(hangs)
        return calls

    assert run_virtual_strict(main()) == 1


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="not both"):
        Retry(deadline=1.0, within_s=1.0)
