"""Helpers on :class:`~drivers.capabilities.ChannelStep` for drivers that sequence steps
on the host (a paused step runs again with what is left of it)."""

from __future__ import annotations

import dataclasses

from labrig.drivers.capabilities import ChannelStep, EndCondition

__all__ = ["remaining"]


def remaining(step: ChannelStep, elapsed_s: float, charge_Ah: float) -> ChannelStep:
    """``step`` with its time and capacity budgets reduced by what has passed
    (``charge_Ah`` is a magnitude); voltage and current ends are unchanged."""

    def cut(e: EndCondition) -> EndCondition:
        if e.quantity == "time":
            return dataclasses.replace(e, value=max(1e-3, e.value - elapsed_s))
        if e.quantity == "capacity":
            return dataclasses.replace(e, value=max(1e-12, e.value - charge_Ah))
        return e

    md = None if step.max_duration_s is None else max(1e-3, step.max_duration_s - elapsed_s)
    return dataclasses.replace(
        step, ends=tuple(cut(e) for e in step.ends),
        cv_ends=tuple(cut(e) for e in step.cv_ends), max_duration_s=md,
    )  # fmt: skip
