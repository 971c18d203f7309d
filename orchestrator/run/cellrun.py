"""The state of one cell run: what it has done, where it is, what it last read."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from labrig.drivers.capabilities import Instrument
from labrig.protocols.models import CellSpec, Group, Loop, Protocol, PulseStep

from ..compile import CompiledStep, StepCompiler
from ..cycles import CycleCounter, CycleFigures
from ..events import EventSink, RunStatus
from ..journal import Journal
from ..store import RunStore
from .bindings import RunBindings
from .lifecycle import RunLifecycle, RunOptions

__all__ = ["CellRunState", "count_steps"]


def count_steps(nodes: Sequence[Any]) -> int:
    """How many instrument-level steps a node list expands to (loops at their bound)."""
    total = 0
    for n in nodes:
        if isinstance(n, Loop):
            per = count_steps(n.steps)
            bound = n.bound()
            extra = 0
            for cp in n.checkpoints:
                extra += cp.fires_within(bound) * count_steps(cp.steps)
            total += per * bound + extra
        elif isinstance(n, Group):
            total += count_steps(n.steps)
        elif isinstance(n, PulseStep):
            total += (n.repeat or 1) * (2 if n.rest_s > 0 else 1)
        else:
            total += 1
    return total


class CellRunState(RunLifecycle):
    """A cell run's bookkeeping; the layers above walk, supervise, ingest and journal."""

    def __init__(
        self,
        *,
        run_id: str,
        protocol: Protocol,
        cell: CellSpec | None,
        channel: str,
        bindings: RunBindings,
        store: RunStore,
        journal: Journal | None = None,
        sinks: Sequence[EventSink] = (),
        options: RunOptions | None = None,
        on_progress: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(
            run_id=run_id,
            protocol=protocol,
            channel=channel,
            store=store,
            journal=journal,
            sinks=sinks,
            on_progress=on_progress,
        )
        self.cell = cell
        self.bind = bindings
        self.options = options or RunOptions()
        self.compiler = StepCompiler(protocol, cell)
        self.cycles = CycleCounter()
        self.steps_planned = max(1, count_steps(protocol.sequence))
        self.steps_done = 0
        self.block_id = 0
        self.last_record_seq = -1
        self.current_step: CompiledStep | None = None
        self.current_counts = True
        self.last_voltage: float | None = None
        self.last_current: float | None = None
        self.last_temperature: float | None = None
        self._last_time = 0.0  # the newest record's time on the channel's clock
        self._last_run_time = 0.0  # the same on the run's clock (the data's time_s)
        # the block's records on the run's clock: run time where the block started
        # (journalled with the block) and channel time -> run time once its first record
        # is in
        self._block_anchor = 0.0
        self._block_open = False  # a block is on the instrument, not concluded yet
        self._time_offset: float | None = None
        # the block's steps: [first, last] record time; those the instrument has not
        # reported as ended yet, in the order they started
        self._step_span: dict[int, list[float]] = {}
        self._unreported: dict[int, None] = {}
        self._cam_mass_g: float | None = None
        if cell is not None:
            m = cell.cam_mass_mg_value()
            self._cam_mass_g = m * 1e-3 if m is not None else None
        self._resumed_unit: dict[str, Any] | None = None
        self.stored_seq = -1  # newest record seq already in the run's data
        self._block_map: dict[int, CompiledStep] = {}
        self._seen_steps: set[int] = set()
        self._ended_cycles: list[CycleFigures] = []
        self._step_cycle: dict[int, CycleFigures] = {}
        self._open_step: list[Any] | None = None  # [step_id, last step charge seen]
        self._block_label: str | None = None
        self._step_charge_hw: dict[int, float] = {}
        self._last_telemetry = -math.inf

    def progress(self) -> float:
        return min(1.0, self.steps_done / self.steps_planned)

    def status(self) -> RunStatus:
        eta = None
        p = self.progress()
        if 0 < p < 1:
            eta = self.run_time() * (1 - p) / p
        return RunStatus(
            run_id=self.run_id,
            channel=self.channel,
            protocol=self.protocol.name,
            state=self.state,
            step=self.current_step.label if self.current_step else None,
            step_index=self.current_step.channel_step.step_id if self.current_step else None,
            cycle=self.cycles.cycle,
            voltage_V=self.last_voltage,
            current_A=self.last_current,
            temperature_C=self.last_temperature,
            run_time_s=self.run_time(),
            eta_s=eta,
            updated=self.clock.wall(),
            cell_id=self.cell.cell_id if self.cell else None,
        )

    def safe_targets(self) -> list[Instrument]:
        targets: list[Instrument] = [self.bind.cycler]
        if self.bind.impedance is not None:
            targets.append(self.bind.impedance)
        targets.extend(self.bind.extra_safe)
        return targets
