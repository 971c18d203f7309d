"""The collection pacer puts collections just after the instrument's records."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from labrig.orchestrator.run.pacing import CollectionPacer


@dataclass
class Channel:
    """Records every ``interval`` s (run time ``k * interval``), readable ``delay`` s later."""

    delay: float
    interval: float = 1.0
    jitter: float = 0.0  # the request's trip to the instrument, uniform in [0, jitter]
    stop_at: float = math.inf  # no records after this
    seen: int = -1
    ages: list[float] = field(default_factory=list)  # of the newest record shown

    def collect(self, pacer: CollectionPacer, now: float, rng: random.Random) -> None:
        arrives = now + rng.uniform(0.0, self.jitter)
        newest = math.floor((min(arrives, self.stop_at + self.delay) - self.delay) / self.interval)
        new = list(range(self.seen + 1, newest + 1))
        if not new:
            pacer.collected(now, 0)
            return
        self.seen = newest
        again = pacer.collected(now, len(new), new[0] * self.interval, new[-1] * self.interval)
        if not again:
            self.ages.append(arrives - (newest * self.interval + self.delay))


def drive(ch: Channel, collect_s: float, until: float, seed: int = 1) -> CollectionPacer:
    rng = random.Random(seed)
    pacer = CollectionPacer(collect_s)
    now = 0.0
    while now < until:
        now += pacer.delay(now)
        ch.collect(pacer, now, rng)
    return pacer


def p99(values: list[float]) -> float:
    s = sorted(values)
    return s[int(0.99 * len(s))]


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.77, 2.4])
@pytest.mark.parametrize("jitter", [0.0, 0.05, 0.2])
def test_the_newest_record_is_collected_soon_after_it_is_made(delay: float, jitter: float) -> None:
    ch = Channel(delay=delay, jitter=jitter)
    warm = drive(Channel(delay=delay, jitter=jitter), 2.0, 60.0)
    pacer = drive(ch, 2.0, 600.0)
    # unpaced, the newest record would be up to a whole interval old (p99 ~ 0.99 s)
    steady = ch.ages[len(ch.ages) // 10 :]
    assert p99(steady) < jitter + 0.1
    # about every collect_s, with few extra looks
    assert 270 <= pacer.collections <= 330
    assert pacer.retries - warm.retries <= 0.04 * (pacer.collections - warm.collections)


def test_records_that_stop_coming_fall_back_to_the_plain_period() -> None:
    ch = Channel(delay=0.3, stop_at=100.0)
    pacer = drive(ch, 2.0, 200.0)
    assert pacer.delay(200.0) == 2.0
    assert pacer.early > 2


def test_no_interval_known_collects_every_period() -> None:
    pacer = CollectionPacer(5.0)
    assert pacer.delay(0.0) == 5.0
    pacer.collected(5.0, 1, 4.0, 4.0)  # one record: no interval yet
    assert pacer.delay(5.0) == 5.0


def test_records_with_one_time_teach_no_interval() -> None:
    pacer = CollectionPacer(2.0)
    pacer.collected(2.0, 3, 1.0, 1.0)  # three records dated alike (a coarse clock)
    assert pacer.interval is None
    assert pacer.delay(2.0) == 2.0
