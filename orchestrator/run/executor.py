"""The executor: walks one protocol on one cell through capability interfaces.

Consecutive cycler steps are handed to the cycler channel as one block; the instrument
ends steps on their own conditions and enforces the limits (as cycler firmware does).
The executor sequences blocks, runs checkpoints on other instruments (EIS on the
impedance channel while the cycler channel is at open circuit), counts cycles, watches
the run envelope on every record, journals its position, and emits events to sinks.
Every run ends with every instrument it used in its safe state.

It is built in layers, one module each: :mod:`.lifecycle` (events, status, control,
safe state, close), :mod:`.cellrun` (the run's bookkeeping), :mod:`.journalling`
(journal and resume), :mod:`.ingest` (records, steps, cycles, the envelope),
:mod:`.block` (supervising a block), :mod:`.checkpoints` (EIS, chamber: a table by step
type) and :mod:`.walk` (nodes, loops, units).
"""

from __future__ import annotations

import logging
from typing import Any

from labrig.drivers.capabilities import ChannelLimits
from labrig.protocols.models import CellSpec, ChamberStep

from ..events import EventKind, RunState
from .checkpoints import set_chamber
from .lifecycle import RunAborted, RunOutcome
from .walk import ProtocolWalker

__all__ = ["Executor"]

log = logging.getLogger(__name__)


class Executor(ProtocolWalker):
    """Runs one protocol on one cell. Use ``await Executor(...).run()`` once."""

    _position: list[Any] | None = None  # where a resumed run goes on

    def _begin(self) -> None:
        """Start from the top, or from the journal when ``resume_from`` was called."""
        if self._resume_from is not None:
            self._position = self._restore(self._resume_from)
            self._emit(EventKind.run_resumed, position=self._position)
            self._journal_held()
        else:
            self._emit(
                EventKind.run_started, protocol=self.protocol.name, cell=_cell_dict(self.cell)
            )
            if self.journal is not None:
                self.journal.set_started(self.clock.wall(), mono=self._t0)
        self._publish_status()

    async def _work(self) -> None:
        if self._position is None:
            await self._prepare()
        else:
            await self._prepare_resumed()
        await self._run_nodes(self.protocol.sequence, True, self._position)
        self._finish_cycle()

    def _outcome(self) -> RunOutcome:
        return RunOutcome(
            run_id=self.run_id,
            state=self.state,
            reason=self.reason,
            cycles=len(self.store.cycles),
            rows=self.store.rows_written,
            run_time_s=self.run_time(),
        )

    async def _prepare(self) -> None:
        """Write the instrument's limits and read them back; refuse to start on mismatch."""
        lim = self.protocol.limits
        if lim.voltage_V is not None and lim.current_abs_A is not None:
            # Cyclers hold voltage and current limits; the temperature envelope is the
            # chamber's alarm plus supervision of every record here.
            wanted = ChannelLimits(lim.voltage_V[0], lim.voltage_V[1], lim.current_abs_A)
            await self.bind.cycler.set_limits(wanted)
            got = await self.bind.cycler.get_limits()
            if not wanted.matches(got):
                raise RunAborted(
                    f"instrument limits read back {got} differ from the protocol's {wanted}",
                    RunState.failed,
                )
        temp = self.protocol.defaults.temperature_C
        if temp is not None and self.bind.chamber is not None:
            await set_chamber(self, ChamberStep(setpoint_C=temp))


def _cell_dict(cell: CellSpec | None) -> dict[str, Any] | None:
    return None if cell is None else cell.model_dump(exclude_none=True)
