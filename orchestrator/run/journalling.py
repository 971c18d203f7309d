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

from labrig.drivers.capabilities import ChannelLimits, InstrumentError

from ..cycles import CycleFigures
from ..events import EventKind, RunState
from ..journal import Journal
from .cellrun import CellRunState
from .lifecycle import RunAborted, event_key

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

    def _journal_unit_start(self, kind: str, **extra: Any) -> None:
        self.store.sync()  # the journal's position never runs ahead of the staged rows
        self._unit_info = {
            "kind": kind,
            "pos": [list(p) for p in self._pos],
            "before": self._snapshot(),
            **extra,
        }
        if self.journal is not None:
            self.journal.unit_start(self._unit_info)

    def _journal_unit_done(self) -> None:
        if self.journal is not None and self._unit_info is not None:
            self.store.sync()
            self.journal.unit_done({**self._unit_info, "after": self._snapshot()})

    def resume_from(self, journal: Journal) -> None:
        """Continue this run where the journal says it was (call before ``run``)."""
        unit = journal.get("unit")
        since = 0
        if unit is not None:
            snap = unit["after"] if unit["state"] == "done" else unit["before"]
            since = int(snap["event_seq"])
        self._resume_from = {
            "unit": unit,
            "cycles": journal.cycles,
            "max_event_seq": journal.max_event_seq(),
            "since": [e for e in journal.events_after(since) if e.kind != EventKind.run_resumed],
            "started": (journal.get("started") or {}).get("wall"),
        }

    def _restore(self, info: dict[str, Any]) -> list[Any] | None:
        unit = info["unit"]
        self.event_seq = int(info["max_event_seq"])
        self._replay_expect = collections.deque(event_key(e.kind, e.data) for e in info["since"])
        self.stored_seq = self.store.stored_seq
        if info["started"] is not None and not self.clock.virtual:
            self._t0 = self.clock.now() - max(0.0, self.clock.wall() - float(info["started"]))
        if unit is None:
            return None  # nothing had been sent yet: start from the top
        snap = unit["after"] if unit["state"] == "done" else unit["before"]
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
        """After a restart the instrument kept its limits; check them if it can say."""
        lim = self.protocol.limits
        if lim.voltage_V is None or lim.current_abs_A is None:
            return
        wanted = ChannelLimits(lim.voltage_V[0], lim.voltage_V[1], lim.current_abs_A)
        try:
            got = await self.bind.cycler.get_limits()
        except InstrumentError as exc:
            self._emit(EventKind.notify, message=f"limits not read back after restart: {exc}")
            return
        if not wanted.matches(got):
            raise RunAborted(
                f"after the restart the instrument's limits {got} differ from {wanted}",
                RunState.failed,
            )
