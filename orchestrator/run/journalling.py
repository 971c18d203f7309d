"""Journalling and resume of a cell run.

Before each unit of work (a block of cycler steps, an EIS sweep, a chamber setpoint) the
run journals its position and a snapshot of its bookkeeping; when the unit is done, the
snapshot after it. A resumed run restores the newest snapshot and walks straight back to
the unit in progress (re-attaching to a block the instrument may still be running).
"""

from __future__ import annotations

import collections
import json
from dataclasses import asdict
from typing import Any

from ..cycles import CycleFigures
from ..events import Event, EventKind, PendingEvent
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
            "last_run_time": self._last_run_time,
            "run_time": self.run_time(),
            # events waiting for their turn (EventTimeline): put back on resume
            "held": [e.to_list() for e in self._timeline.pending()],
        }

    def resume_from(self, journal: Journal) -> None:
        """Continue this run where the journal says it was (call before ``run``)."""
        unit = journal.get("unit")
        since = 0
        if unit is not None:
            snap = unit["after"] if unit["state"] == "done" else unit["before"]
            since = int(snap["event_seq"])
        max_seq = journal.max_event_seq()
        self._resume_from = {
            "unit": unit,
            "cycles": journal.cycles,
            "max_event_seq": journal.max_event_seq(),
            "since": journal.events_after(since),
            "started": journal.get("started") or {},
            "reached": max((e.run_time_s for e in journal.events_after(max_seq - 1)), default=0.0),
        }

    def _restore(self, info: dict[str, Any]) -> list[Any] | None:
        unit = info["unit"]
        self.event_seq = int(info["max_event_seq"])
        self.stored_seq = self.store.stored_seq
        snap = None
        if unit is not None:
            snap = unit["after"] if unit["state"] == "done" else unit["before"]
        self._continue_clock(info, snap)
        self._restore_events(info["since"], [] if snap is None else snap.get("held", []))
        # nothing recorded from here on is dated before what the journal holds
        self._timeline.last_time_s = float(info.get("reached", 0.0))
        if unit is None or snap is None:
            return None  # nothing had been sent yet: start from the top
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
        self._last_run_time = float(snap.get("last_run_time", self._last_time))
        if unit.get("kind") == "block" and unit["state"] != "done":
            # the instrument may still be running it: what it did is not known yet
            self._block_anchor = float(unit.get("anchor", self._last_run_time))
            self._block_open = True
        self._resumed_unit = unit
        self._unit_info = {k: v for k, v in unit.items() if k not in ("state", "after")}
        return list(unit["pos"])

    def _restore_events(self, since: list[Event], held_items: list[Any]) -> None:
        """Events after the snapshot: those it held that were recorded since are done;
        those it held that were not go back on the timeline; the rest were derived from
        the unit in progress and will be derived again (recorded once: skipped)."""
        recorded = {_identity(e.kind, e.run_time_s, e.data) for e in since}
        held = [PendingEvent.from_list(x) for x in held_items]
        from_held = {_identity(*h.key()) for h in held}
        self._timeline.extend(h for h in held if _identity(*h.key()) not in recorded)
        self._replay_expect = collections.deque(
            event_key(e.kind, e.data)
            for e in since
            if e.kind != EventKind.run_resumed
            and _identity(e.kind, e.run_time_s, e.data) not in from_held
        )

    def _journal_held(self) -> None:
        """Put the events still waiting for their turn into the journal's snapshot now:
        a restart before they are recorded finds them there (a resumed run's first
        event, when what came before it waits on the end of a cycle)."""
        entry = self._resumed_unit
        if self.journal is None or entry is None or not len(self._timeline):
            return
        key = "after" if entry["state"] == "done" else "before"
        # added to what the snapshot held (those recorded since stay: a restart tells
        # them apart from the ones still waiting)
        held = list(entry[key].get("held", []))
        known = {_identity(*PendingEvent.from_list(x).key()) for x in held}
        held += [e.to_list() for e in self._timeline.pending() if _identity(*e.key()) not in known]
        entry = {**entry, key: {**entry[key], "held": held}}
        self._resumed_unit = entry
        if self._unit_info is not None and key in self._unit_info:
            self._unit_info = {**self._unit_info, key: entry[key]}
        self.journal.set_unit(entry)

    def _continue_clock(self, info: dict[str, Any], snap: dict[str, Any] | None) -> None:
        """Run time goes on from where the run was: on hardware by the wall clock since
        it started (the time it was down counts), on a virtual clock from the instant it
        started when that is this loop's past; never before what it had recorded."""
        started, now = info["started"], self.clock.now()
        if self.clock.virtual:
            mono = started.get("mono")
            if mono is not None and float(mono) <= now:
                self._t0 = float(mono)
        elif started.get("wall") is not None:
            self._t0 = now - max(0.0, self.clock.wall() - float(started["wall"]))
        reached = float(info.get("reached", 0.0))
        if snap is not None:
            reached = max(reached, float(snap.get("run_time", 0.0)))
        self._t0 = min(self._t0, now - reached)

    async def _prepare_resumed(self) -> None:
        """After a restart: the channel's limits read back and compared (limits.py)."""
        for note in await check_resumed_limits(self.bind.cycler, self.protocol.limits):
            self._emit(EventKind.notify, message=note)


def _identity(kind: EventKind, time_s: float, data: dict[str, Any]) -> str:
    """One event, as the journal holds it (recorded, or waiting in a snapshot)."""
    return json.dumps([kind.value, time_s, data], sort_keys=True, default=str)
