"""Ingesting a cell run's records: steps, cycles, capacities, the envelope, storage."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import RecordBatch, StepEnd

from ..compile import CompiledStep
from ..cycles import CycleFigures
from ..events import EventKind, Telemetry
from ..trips import trip_reason
from .journalling import JournalledRun

__all__ = ["RecordIngest"]


class RecordIngest(JournalledRun):
    """Turns the instrument's records and step ends into rows, cycles and events.

    Records are put on the run's clock (run time since the run started; the data's
    ``time_s``): a block's channel times are shifted so that its first record falls when
    the block was started. A step starts at its first record and ends at its last, a
    cycle ends at its last record; their events are dated so and recorded in time order
    (:meth:`_event_bound` says how long each must wait).
    """

    def _begin_block(self, anchor: float) -> None:
        """A block starts (or is re-attached) at run time ``anchor``."""
        self._block_anchor = anchor
        self._block_open = True
        self._time_offset = None
        self._step_span = {}
        self._unreported = {}

    def _run_times(self, batch: RecordBatch) -> npt.NDArray[np.float64]:
        if self._time_offset is None:
            self._time_offset = self._block_anchor - float(batch.time_s[0])
        return batch.time_s + self._time_offset

    def _event_bound(self) -> tuple[float, int] | None:
        bounds: list[tuple[float, int]] = []
        for sid in self._unreported:  # the earliest: it ends at its last record or later
            bounds.append((self._step_span[sid][1], 0))
            break
        else:
            if self._block_open:  # records not read yet fall after the block's start
                bounds.append((self._block_anchor, 0))
        bounds.extend((f.end_time_s, 1) for f in self._ended_cycles)
        end = self.cycles.pending_end()
        if end is not None:  # the cycle may be over: the next charge will tell
            bounds.append((end, 1))
        return min(bounds) if bounds else None

    def _ingest(self, batch: RecordBatch) -> tuple[int, float, float]:
        """Assign cycles and capacities to records, check the envelope, store them.

        Returns how many were new and the run times of the first and last of them."""
        # Drop anything already seen (a re-read after a reconnect) to keep rows unique.
        keep = batch.seq > self.last_record_seq
        if not keep.all():
            batch = batch.select(keep)
            if len(batch) == 0:
                return 0, 0.0, 0.0
        n = len(batch)
        times = self._run_times(batch)
        cycle_col = np.empty(n, dtype=np.int32)
        charge_col = np.empty(n)
        discharge_col = np.empty(n)
        kind_col = np.empty(n, dtype=object)
        sid = batch.step_id
        # records arrive in step order: split where the step id changes (a collection of
        # a few records is mostly one step: no arrays needed to say so)
        if sid[0] == sid[-1] and (n < 3 or not np.any(sid != sid[0])):
            spans = [(0, n)]
        else:
            cuts = np.flatnonzero(np.diff(sid)) + 1
            starts = np.concatenate(([0], cuts)).tolist()
            spans = list(zip(starts, [*starts[1:], n], strict=True))
        for a, b in spans:
            step_id = int(sid[a])
            cs = self._block_map.get(step_id)
            kind = cs.channel_step.kind if cs is not None else "unknown"
            if step_id not in self._seen_steps:
                self._seen_steps.add(step_id)
                self._start_step(cs, kind, float(times[a]))
            span = self._step_span.get(step_id)
            if span is not None:
                span[1] = float(times[b - 1])
            self.cycles.saw_records(float(times[b - 1]))
            ch, dis = self.cycles.cumulative(kind, self.current_counts, batch.step_charge_Ah[a:b])
            if self._open_step is not None:
                self._open_step[1] = float(batch.step_charge_Ah[b - 1])
            cycle_col[a:b] = self.cycles.cycle
            charge_col[a:b] = ch
            discharge_col[a:b] = dis
            kind_col[a:b] = kind
        self._check_envelope(batch, times)
        rows: dict[str, npt.NDArray[Any]] = {
            "time_s": times,
            "cycle": cycle_col,
            "step": batch.step_id.astype(np.int32),
            "step_type": kind_col,
            "current_A": batch.current_A,
            "voltage_V": batch.voltage_V,
            "charge_capacity_Ah": charge_col,
            "discharge_capacity_Ah": discharge_col,
            "temperature_C": batch.temperature_C,
            "record_seq": batch.seq,
        }
        if self.stored_seq >= int(batch.seq[0]):
            # re-read after a restart: these rows were counted again for the bookkeeping,
            # but only the ones the run's data does not hold yet are stored
            new = batch.seq > self.stored_seq
            rows = {k: v[new] for k, v in rows.items()}
        self.store.append_records(rows)
        self.last_record_seq = int(batch.seq[-1])
        self._last_time = float(batch.time_s[-1])
        self._last_run_time = float(times[-1])
        self.last_voltage = float(batch.voltage_V[-1])
        self.last_current = float(batch.current_A[-1])
        self.last_temperature = float(batch.temperature_C[-1])
        self._release_events()
        return n, float(times[0]), float(times[-1])

    def _send_telemetry(self) -> None:
        """The newest record as a live reading (with the step it belongs to)."""
        now = self.run_time()
        if now - self._last_telemetry < self.options.telemetry_every_s:
            return
        self._last_telemetry = now
        cs = self.current_step
        self.out.telemetry(
            Telemetry(
                run_id=self.run_id,
                channel=self.channel,
                wall_time=self.clock.wall(),
                run_time_s=self._last_run_time,
                voltage_V=self.last_voltage if self.last_voltage is not None else math.nan,
                current_A=self.last_current if self.last_current is not None else math.nan,
                temperature_C=self.last_temperature,
                cycle=self.cycles.cycle,
                step_index=cs.channel_step.step_id if cs else None,
                step=cs.label if cs else None,
            )
        )

    def _start_step(self, cs: CompiledStep | None, kind: str, time_s: float) -> None:
        """Step ``cs`` started at run time ``time_s`` (its first record)."""
        self._close_open_step()
        ended = self.cycles.start_step(kind, self.current_counts, self._block_label)
        if ended is not None:
            if any(f is ended for f in self._step_cycle.values()):
                # stored once the block's step results (energy, time) are in
                self._ended_cycles.append(ended)
            else:
                self._store_cycle(ended)
        self.current_step = cs
        sid = cs.channel_step.step_id if cs else -1
        self._step_cycle[sid] = self.cycles.current
        self._step_span[sid] = [time_s, time_s]
        self._unreported[sid] = None
        self._open_step = [sid, 0.0]
        self._emit_at(
            time_s,
            EventKind.step_started,
            step_id=sid,
            step=cs.label if cs else None,
            step_type=kind,
            cycle=self.cycles.cycle,
        )

    def _close_open_step(self, exact_charge_Ah: float | None = None) -> None:
        """Count the open step's charge into the cycle (once)."""
        if self._open_step is None:
            return
        q = exact_charge_Ah if exact_charge_Ah is not None else self._open_step[1]
        self.cycles.add_charge(self.current_counts, q)
        self._open_step = None

    def _check_envelope(self, batch: RecordBatch, times: npt.NDArray[np.float64]) -> None:
        lim = self.protocol.limits
        bad: list[tuple[int, str, float, Any]] = []
        if lim.voltage_V is not None:
            lo, hi = lim.voltage_V
            v = batch.voltage_V
            idx = _outside(v, lo, hi)
            if idx.size:
                bad.append((int(idx[0]), "voltage", float(v[idx[0]]), list(lim.voltage_V)))
        if lim.current_abs_A is not None:
            idx = _outside(batch.current_A, -lim.current_abs_A * 1.001, lim.current_abs_A * 1.001)
            if idx.size:
                k = int(idx[0])
                bad.append((k, "current", float(batch.current_A[k]), lim.current_abs_A))
        if lim.temperature_C is not None:
            t = batch.temperature_C
            lo, hi = lim.temperature_C
            idx = _outside(t, lo, hi)
            if idx.size:
                bad.append((int(idx[0]), "temperature", float(t[idx[0]]), list(lim.temperature_C)))
        if bad:
            k, quantity, value, limit = bad[0]
            self._emit_at(
                float(times[k]), EventKind.limit_trip, quantity=quantity, value=value, limit=limit
            )
            # the safe state is applied by the caller's cleanup; do not resume by itself
            cs = self.current_step
            self._abort_requested = trip_reason(
                quantity, value, limit, step_no=self.steps_done + 1,
                step_label=cs.label if cs else None,
                first_record=self.last_record_seq <= 0 and self.steps_done == 0,
            )  # fmt: skip

    def _finish_step(self, end: StepEnd, cs: CompiledStep | None) -> None:
        kind = cs.channel_step.kind if cs else "unknown"
        if end.step_id not in self._seen_steps:
            # a step that recorded nothing (ended at once): still counts, placed after
            # the newest record; the status keeps the step of that record
            latest = self.current_step
            self._seen_steps.add(end.step_id)
            self._start_step(cs, kind, max(self._last_run_time, self._block_anchor))
            self.current_step = latest
        if self._open_step is not None and self._open_step[0] == end.step_id:
            self._close_open_step(end.charge_Ah)
        figures = self._step_cycle.pop(end.step_id, None)
        span = self._step_span[end.step_id]
        self._unreported.pop(end.step_id, None)
        self.cycles.add_step_totals(
            kind,
            self.current_counts,
            end.charge_Ah,
            end.energy_Wh,
            end.time_s,
            cs.c_rate if cs else None,
            span[1],
            target=figures,
        )
        self.steps_done += 1
        self._emit_at(
            span[1],
            EventKind.step_ended,
            step_id=end.step_id,
            reason=end.reason,
            duration_s=end.time_s,
            capacity_Ah=end.charge_Ah,
            end_voltage_V=end.end_voltage_V,
            cycle=figures.cycle if figures is not None else self.cycles.cycle,
        )

    def _store_ended_cycles(self) -> None:
        for figures in self._ended_cycles:
            self._store_cycle(figures)
        self._ended_cycles.clear()
        self._step_cycle.clear()
        self._release_events()

    def _finish_cycle(self) -> None:
        self._store_ended_cycles()
        cur = self.cycles.current
        if cur.charge_Ah > 0 or cur.discharge_Ah > 0:
            self._store_cycle(cur)

    def _store_cycle(self, figures: CycleFigures) -> None:
        row = figures.row(self._cam_mass_g)
        self.store.add_cycle(row)
        if self.journal is not None:
            self.journal.add_cycle(row)
        self._emit_at(figures.end_time_s, EventKind.cycle_ended, **row)


_NONE = np.empty(0, dtype=np.intp)


def _outside(values: npt.NDArray[np.float64], lo: float, hi: float) -> npt.NDArray[np.intp]:
    """Indices of values below ``lo`` or above ``hi`` (NaN is neither); two reductions
    answer the usual case, where there are none (a NaN fails them: then the full test)."""
    if not values.size or (values.min() >= lo and values.max() <= hi):
        return _NONE
    return np.flatnonzero((values < lo) | (values > hi))
