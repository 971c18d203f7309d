"""Journalling and resume of a cell run.

Before each unit of work (a block of cycler steps, an EIS sweep, a chamber setpoint) the
run journals its position and a snapshot of its bookkeeping; when the unit is done, the
snapshot after it. A resumed run restores the newest snapshot and walks straight back to
the unit in progress (re-attaching to a block the instrument may still be running).
"""

from __future__ import annotations

import collections
from dataclasses import asdict
from typing import Any

from ..cycles import CycleFigures
from ..events import EventKind
from ..journal import Journal
from .cellrun import CellRunState
from .lifecycle import event_key
from .limits import check_resumed_limits

__all__ = ["JournalledRun"]


class JournalledRun(CellRunState):
    """A cell run that journals its units of work and can resume from the journal."""

    def _snapshot(self) -> dict[str, Any]:
        cyc = self.cycles
        return {
            "cycle": asdict(cyc.current),
            "last_active": cyc.last_active,
            "cycle_started": cyc.started,
            "steps_done": self.steps_done,
            "event_seq": self.event_seq,
            "block_id": self.block_id,
            "next_step_id": self.compiler.next_id,
            "read_seq": self.last_record_seq,
            "last": [self.last_voltage, self.last_current, self.last_temperature],
            "last_time": self._last_time,
        }

    def _resume_extra(self, journal: Journal, unit: dict[str, Any] | None) -> dict[str, Any]:
        since = 0 if unit is None else int(self._unit_snapshot(unit)["event_seq"])
        return {
            "cycles": journal.cycles,
            "since": [e for e in journal.events_after(since) if e.kind != EventKind.run_resumed],
        }

    def _restore(self, info: dict[str, Any]) -> list[Any] | None:
        unit = info["unit"]
        self.event_seq = int(info["max_event_seq"])
        self._replay_expect = collections.deque(event_key(e.kind, e.data) for e in info["since"])
        self.stored_seq = self.store.stored_seq
        self._restore_run_time(info["started"])
        if unit is None:
            return None  # nothing had been sent yet: start from the top
        snap = self._unit_snapshot(unit)
        cur = CycleFigures(**snap["cycle"])
        self.cycles.restore(cur, snap["last_active"], bool(snap["cycle_started"]))
        load_cycles = info["cycles"]
        self.store.replace_cycles(lambda: [r for r in load_cycles() if int(r["cycle"]) < cur.cycle])
        self.steps_done = int(snap["steps_done"])
        self.block_id = int(snap["block_id"])
        self.compiler.next_id = int(snap["next_step_id"])
        self.last_record_seq = int(snap["read_seq"])
        self.last_voltage, self.last_current, self.last_temperature = snap["last"]
        self._last_time = float(snap.get("last_time", 0.0))
        self._resumed_unit = unit
        self._unit_info = {k: v for k, v in unit.items() if k not in ("state", "after")}
        return list(unit["pos"])

    async def _prepare_resumed(self) -> None:
        """After a restart: the channel's limits read back and compared (limits.py)."""
        for note in await check_resumed_limits(self.bind.cycler, self.protocol.limits):
            self._emit(EventKind.notify, message=note)
