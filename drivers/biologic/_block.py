"""The supervisor of a cycling block on a BioLogic channel: one step after another.

Each step is loaded and started as techniques (:mod:`._cycling`); the firmware ends it on
its conditions and limits and stops the channel; the supervisor drains the records,
reads how the step ended, and follows its action (next, goto, end the block, pause,
abort). A host pause stops the step; on resume it runs again with what is left of its
time and capacity ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from labrig.drivers.capabilities import (
    ChannelLimits,
    ChannelState,
    ChannelStep,
    StepEnd,
)
from labrig.drivers.recordstore import RecordStore, StepTally
from labrig.drivers.steps import remaining

from ._cycling import plan_step
from ._params import Ocv
from ._runner import ChainRunner, Frame

__all__ = ["BlockRun", "run_block"]


@dataclass
class BlockRun:
    """A block as the host runs it on a channel: its steps, their ends, where it is."""

    block_id: int
    steps: tuple[ChannelStep, ...]
    ends: list[StepEnd] = field(default_factory=list)
    state: ChannelState = ChannelState.running
    fault: str | None = None
    step_id: int | None = None
    step_t0: float = 0.0


class _Channel(Protocol):
    """What the supervisor uses of :class:`~._channel.BioLogicChannel`."""

    runner: ChainRunner
    records: RecordStore
    poll_s: float
    _limits: ChannelLimits | None
    _resume: asyncio.Event

    def _now(self) -> float: ...

    def _on_frame(self, tally: StepTally, frame: Frame) -> None: ...

    def _on_rest_frame(self, tally: StepTally, frame: Frame) -> None: ...

    def _step_end(self, plan: object, tally: StepTally) -> tuple[str, str]: ...


async def run_block(ch: _Channel, run: BlockRun) -> None:
    """Run ``run``'s steps in order on ``ch`` until the block ends."""
    idx = 0
    while 0 <= idx < len(run.steps):
        step = run.steps[idx]
        end = await _run_step(ch, run, step)
        run.ends.append(end)
        if end.reason == "safety":
            run.state = ChannelState.fault
            run.fault = f"step {step.step_id}: limit reached at {end.end_voltage_V:.4f} V"
            return
        if end.reason == "stopped":
            run.state = ChannelState.fault
            run.fault = f"step {step.step_id}: the channel stopped before any end (stopped " \
                        "from outside labrig?)"  # fmt: skip
            return
        if end.action in ("abort", "end_block"):
            break
        if end.action == "pause":
            run.state = ChannelState.paused
            return
        if end.action == "goto":
            cond = next((e for e in (*step.ends, *step.cv_ends)
                         if e.action == "goto" and e.quantity == end.reason), None)  # fmt: skip
            idx = cond.goto if cond is not None and cond.goto is not None else idx + 1
        else:
            idx += 1
    run.state = ChannelState.done


async def _run_step(ch: _Channel, run: BlockRun, step: ChannelStep) -> StepEnd:
    """One step, surviving host pauses; its end from the last record."""
    elapsed, charge, energy = 0.0, 0.0, 0.0
    todo = step
    while True:
        assert ch._limits is not None
        ewe = float((await ch.runner.values()).Ewe)
        plan = plan_step(todo, ch._limits, ewe_V=ewe)
        # the channel's clock and the instrument's ticks may differ by a tick: records
        # never go back in time
        t0 = max(ch._now(), ch.records.last_time)
        run.step_id, run.step_t0 = step.step_id, t0 - elapsed
        tally = StepTally(step.step_id, t0)
        tally.charge_Ah, tally.energy_Wh = charge, energy
        rest = isinstance(plan.techniques[0], Ocv)

        on: Callable[[StepTally, Frame], None] = ch._on_rest_frame if rest else ch._on_frame

        def sink(
            frame: Frame, tally: StepTally = tally, on: Callable[[StepTally, Frame], None] = on
        ) -> None:
            on(tally, frame)

        await ch.runner.run(plan.techniques, sink, poll_s=ch.poll_s)
        step_t = (tally.last_t if tally.last_t is not None else t0) - t0
        if not ch._resume.is_set():  # a host pause stopped the step: wait, run the rest
            run.state = ChannelState.paused
            await ch._resume.wait()
            run.state = ChannelState.running
            elapsed += step_t
            charge, energy = tally.charge_Ah, tally.energy_Wh
            todo = remaining(step, elapsed, abs(charge))
            continue
        reason, action = ch._step_end(plan, tally)
        return StepEnd(
            step_id=step.step_id, reason=reason, action=cast(Any, action),
            time_s=elapsed + step_t, charge_Ah=tally.charge_Ah, energy_Wh=tally.energy_Wh,
            end_voltage_V=tally.last_v,
        )  # fmt: skip
