"""PollPlanner: long waits only when the block's own steps show it will run that long."""

from __future__ import annotations

import pytest

from labrig.drivers.capabilities import ChannelStep, EndCondition, StepEnd
from labrig.drivers.polling import PollPlanner


def _cycle(first_id: int, *, exit_on_discharge: bool = False) -> list[ChannelStep]:
    cut = EndCondition("voltage", "<=", 3.0, "end_block" if exit_on_discharge else "next")
    return [
        ChannelStep(first_id, "cc", "charge", 0.01, ends=(EndCondition("voltage", ">=", 4.2),)),
        ChannelStep(first_id + 1, "rest", "rest", ends=(EndCondition("time", ">=", 600.0),)),
        ChannelStep(first_id + 2, "cc", "discharge", -0.01, ends=(cut,)),
        ChannelStep(first_id + 3, "rest", "rest", ends=(EndCondition("time", ">=", 600.0),)),
    ]


def _end(step_id: int, seconds: float, reason: str = "voltage") -> StepEnd:
    return StepEnd(step_id, reason, "next", seconds, 0.0, 0.0, 3.0)


def test_nothing_learned_polls_at_poll_s() -> None:
    steps = [s for k in range(5) for s in _cycle(10 * k)]
    p = PollPlanner(steps, 600.0, 21600.0)
    assert p.interval(0, 0.0) == 600.0
    assert p.remaining_s(0, 0.0) == 0.0


def test_learned_iterations_give_half_the_remaining_time_capped() -> None:
    steps = [s for k in range(25) for s in _cycle(10 * k)]
    p = PollPlanner(steps, 600.0, 21600.0)
    p.learn([_end(0, 3600.0), _end(1, 600.0, "time"), _end(2, 3500.0), _end(3, 600.0, "time")])
    # in iteration 2, step 0 half done: 1800 s of it, then 3 steps and 23 whole cycles
    left = p.remaining_s(4, 1800.0)
    assert left == pytest.approx(1800.0 + 600.0 + 3500.0 + 600.0 + 23 * 8300.0)
    assert p.interval(4, 1800.0) == 21600.0  # capped
    # near the end of the block: the last rest, 500 s in: 100 s left, so poll_s
    assert p.interval(99, 500.0) == 600.0
    # the last discharge, just started: 3500 + 600 left, half of it
    assert p.interval(98, 0.0) == pytest.approx(2050.0)


def test_steps_that_may_leave_the_block_bound_the_estimate() -> None:
    steps = [s for k in range(10) for s in _cycle(10 * k, exit_on_discharge=True)]
    p = PollPlanner(steps, 600.0, 21600.0)
    p.learn([_end(0, 3600.0), _end(1, 600.0, "time"), _end(2, 3500.0), _end(3, 600.0, "time")])
    # from the charge of cycle 3, the discharge may end the block: charge + rest + discharge
    assert p.remaining_s(8, 0.0) == pytest.approx(3600.0 + 600.0 + 3500.0)


def test_unseen_steps_count_as_zero_and_history_carries_over() -> None:
    first = [s for k in range(3) for s in _cycle(10 * k)]
    history: dict[object, float] = {}
    p = PollPlanner(first, 600.0, 21600.0, history)  # type: ignore[arg-type]
    p.learn([_end(0, 3600.0), _end(1, 600.0, "time")])
    assert p.remaining_s(2, 0.0) == pytest.approx(600.0 + 2 * (3600.0 + 600.0 + 600.0))
    p.learn([_end(2, 1.0, "safety")])  # a safety end says nothing about durations
    assert p.remaining_s(2, 0.0) == pytest.approx(600.0 + 2 * (3600.0 + 600.0 + 600.0))
    # the next block with the same steps (new ids) starts from what this one learned
    again = [s for k in range(3, 6) for s in _cycle(10 * k)]
    nxt = PollPlanner(again, 600.0, 21600.0, history)  # type: ignore[arg-type]
    assert nxt.remaining_s(0, 0.0) == pytest.approx(3 * (3600.0 + 600.0 + 600.0))


def test_bad_settings_and_positions() -> None:
    with pytest.raises(ValueError):
        PollPlanner(_cycle(0), 600.0, 60.0)
    p = PollPlanner(_cycle(0), 600.0, 6000.0)
    assert p.interval(-1, 0.0) == 600.0
    assert p.interval(17, 0.0) == 600.0
