"""How long a driver may wait before asking a cycler about a running block again.

A host that only needs to notice the end of a long block (a dry run, or a lab that does
not want live status) need not poll every ``poll_s``: steps repeat inside a block (25
unrolled iterations of charge, rest, discharge, rest), so once a step of one kind has
ended, the same kind of step later in the block (or in the next block) will take about
as long as its latest run.
:class:`PollPlanner` turns the step durations seen so far into a lower bound of the
time the block still has to run, and waits half of it, never less than ``poll_s`` and
never more than ``max_poll_s``. Steps never seen, and steps after one that may leave the
block early (an end that is not "next"), count as zero, so a wait is only long when the
block is certain to run that long (to within the factor of two).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from labrig.drivers.capabilities import ChannelStep, StepEnd

__all__ = ["PollPlanner", "step_signature"]


def step_signature(step: ChannelStep) -> Hashable:
    """What decides a step's duration: everything except its id and record rule."""
    return (
        step.mode,
        step.kind,
        step.current_A,
        step.voltage_V,
        step.ends,
        step.cv_ends,
        step.max_duration_s,
        step.temperature_C,
    )


class PollPlanner:
    """Poll intervals for one block of ``steps`` (in the order the cycler runs them)."""

    def __init__(
        self,
        steps: Sequence[ChannelStep],
        poll_s: float,
        max_poll_s: float,
        history: dict[Hashable, float] | None = None,
    ) -> None:
        if poll_s <= 0 or max_poll_s < poll_s:
            raise ValueError("need 0 < poll_s <= max_poll_s")
        self.poll_s = poll_s
        self.max_poll_s = max_poll_s
        self._keys = [step_signature(s) for s in steps]
        self._index = {s.step_id: i for i, s in enumerate(steps)}
        # a step with an end other than "next" may leave the block or jump: nothing after
        # it is certain to run
        self._exits = [
            any(e.action != "next" for e in (*s.ends, *s.cv_ends)) for s in steps
        ]  # fmt: skip
        # the latest duration of each kind of step (shared between a channel's blocks, so
        # a block of the same steps as the one before is planned from its first poll)
        self._last: dict[Hashable, float] = {} if history is None else history

    def learn(self, ends: Sequence[StepEnd]) -> None:
        """Take step ends not given before (in the order the steps ended)."""
        for end in ends:
            i = self._index.get(end.step_id)
            if i is None or end.reason in ("safety", "stopped", "pause"):
                continue
            self._last[self._keys[i]] = end.time_s

    def _expected(self, i: int) -> float:
        return self._last.get(self._keys[i], 0.0)

    def remaining_s(self, index: int, step_elapsed_s: float) -> float:
        """A lower estimate of the block's remaining time, in step ``index`` (0-based)."""
        if not 0 <= index < len(self._keys):
            return 0.0
        left = max(0.0, self._expected(index) - step_elapsed_s)
        for j in _after(index, len(self._keys), self._exits):
            left += self._expected(j)
        return left

    def interval(self, index: int, step_elapsed_s: float) -> float:
        """Seconds to wait before the next poll."""
        half = 0.5 * self.remaining_s(index, step_elapsed_s)
        return min(self.max_poll_s, max(self.poll_s, half))


def _after(index: int, n: int, exits: Sequence[bool]) -> Iterable[int]:
    """The steps certain to follow step ``index``."""
    j = index
    while not exits[j] and j + 1 < n:
        j += 1
        yield j
