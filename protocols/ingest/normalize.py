"""One set of cycle and step semantics for every vendor's records.

Each vendor counts cycles and signs currents its own way (MACCOR advances the cycle where
the procedure says, BioLogic counts half cycles, Neware and Arbin count a cycle from
charge to charge or from discharge to discharge). Imported data follow labrig's own
conventions instead:

- current is positive while charging (the readers fix the sign);
- a step is a run of records the vendor logged under one step; its type (charge,
  discharge, rest, CV hold, ...) is what the vendor says it was, else the sign of the
  charge that flowed in it;
- a cycle is one charge followed by one discharge, counted from 1: a new cycle starts at
  the first charging step after a discharge. Records before the first charge (a rest, or
  the discharge of a cell delivered charged) form cycle 1, which then has no charge;
- ``charge_capacity_Ah`` and ``discharge_capacity_Ah`` count up from zero within each
  cycle, summing the charge the vendor counted in each direction.

The per-cycle map keeps the vendor's own cycle numbers (``source_cycle``: the vendor's
cycle at the cycle's first record; ``source_cycle_last``: at its last record).

Everything here works on whole numpy columns; the only Python loops run over steps
(thousands), never over records (millions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..analysis.loader import KIND_CODES, KIND_NAMES
from ._model import FloatArr, IntArr, VendorData

__all__ = [
    "NormalizedRun",
    "counter_increments",
    "integrate_current",
    "normalize",
    "spectrum_cycle",
    "step_counter_increments",
]

_REST_LIKE = (KIND_CODES["rest"], KIND_CODES["ocv"], KIND_CODES["eis"])
_CHARGE = (KIND_CODES["charge"], KIND_CODES["pulse_charge"])
_DISCHARGE = (KIND_CODES["discharge"], KIND_CODES["pulse_discharge"])
_HOLD = KIND_CODES["hold"]


@dataclass
class NormalizedRun:
    """Records in labrig's columns (``step_type`` as KIND codes in ``kind``) and the map
    from labrig's cycles to the vendor's."""

    columns: dict[str, npt.NDArray[Any]]
    kind: npt.NDArray[np.int8]
    cycle_map: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def step_type_values(self) -> npt.NDArray[Any]:
        """The step types as strings (an object array), as the run store takes them."""
        names = np.array(KIND_NAMES, dtype=object)
        out: npt.NDArray[Any] = names[self.kind.astype(np.int64)]
        return out


def _starts(*keys: npt.NDArray[Any]) -> IntArr:
    n = int(keys[0].shape[0])
    if n == 0:
        return np.empty(0, np.int64)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change).astype(np.int64)


def step_counter_increments(q: FloatArr, segment: npt.NDArray[Any]) -> FloatArr:
    """Per-record increase of an unsigned counter that restarts with every step (MACCOR's
    ``Amp-hr``, Neware's step capacity). At a step's first record the increase is the
    counter itself; a drop inside a step is taken as a restart too."""
    q = np.abs(np.asarray(q, dtype=np.float64))
    dq = np.empty_like(q)
    if q.size == 0:
        return dq
    dq[0] = q[0]
    np.subtract(q[1:], q[:-1], out=dq[1:])
    restart = np.zeros(q.shape, dtype=bool)
    restart[0] = True
    restart[1:] = (segment[1:] != segment[:-1]) | (dq[1:] < 0)
    dq[restart] = q[restart]
    np.nan_to_num(dq, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return dq


def counter_increments(q: FloatArr, tol: float = 1e-9) -> FloatArr:
    """Per-record increase of a counter that only grows except where it is reset to zero
    (Arbin's and BDF's charge and discharge capacities, whatever interval they reset on)."""
    q = np.asarray(q, dtype=np.float64)
    dq = np.empty_like(q)
    if q.size == 0:
        return dq
    dq[0] = q[0]
    np.subtract(q[1:], q[:-1], out=dq[1:])
    reset = dq < -tol * max(1.0, float(np.nanmax(np.abs(q))) if q.size else 1.0)
    dq[reset] = q[reset]
    np.maximum(dq, 0.0, out=dq)
    np.nan_to_num(dq, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return dq


def integrate_current(t: FloatArr, i: FloatArr, segment: npt.NDArray[Any]) -> FloatArr:
    """Charge per record interval (Ah, signed) by the trapezoid rule, none across steps:
    for files that log no capacity of their own."""
    dq = np.zeros(t.shape, dtype=np.float64)
    if t.size > 1:
        dq[1:] = 0.5 * (i[1:] + i[:-1]) * (t[1:] - t[:-1]) / 3600.0
        dq[1:][segment[1:] != segment[:-1]] = 0.0
    np.nan_to_num(dq, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return dq


def _segment_kinds(q: FloatArr, imax: FloatArr, hint: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
    """Step type per step: the vendor's word where it has one, else the sign of its charge."""
    scale = float(np.max(np.abs(q))) if q.size else 0.0
    eps = max(1e-12, 1e-6 * scale)
    by_sign = np.where(
        q > eps, KIND_CODES["charge"], np.where(q < -eps, KIND_CODES["discharge"], 0)
    ).astype(np.int8)
    i_scale = float(np.max(imax)) if imax.size else 0.0
    idle = (by_sign == 0) & (imax <= max(1e-12, 1e-4 * i_scale))
    by_sign[idle] = KIND_CODES["rest"]
    return np.where(hint != 0, hint, by_sign).astype(np.int8)


def _segment_cycles(kind: npt.NDArray[np.int8], q: FloatArr) -> IntArr:
    """labrig's cycle number of every step: +1 at each charging step that follows a
    discharge (see the module docstring)."""
    hold = kind == _HOLD
    charging = np.isin(kind, _CHARGE) | (hold & (q > 0))
    discharging = np.isin(kind, _DISCHARGE) | (hold & (q < 0))
    dis_before = np.cumsum(discharging) - discharging  # discharging steps before each step
    idx = np.flatnonzero(charging)
    new = np.zeros(kind.shape, dtype=np.int64)
    if idx.size:
        seen = dis_before[idx]
        prev = np.concatenate(([0], seen[:-1]))
        new[idx] = seen > prev
    return 1 + np.cumsum(new)


def _cycle_map(cycle: IntArr, starts: IntArr, src: IntArr, n: int) -> list[dict[str, Any]]:
    ends = np.append(starts[1:], n) - 1
    return [
        {"cycle": int(cycle[s]), "source_cycle": int(src[s]), "source_cycle_last": int(src[e])}
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def normalize(vd: VendorData) -> NormalizedRun:
    """Assign labrig's step types, cycles and capacity counters to a reader's records."""
    n = len(vd)
    seg_starts = _starts(vd.segment, vd.source_cycle, vd.kind_hint)
    if n == 0:
        empty: dict[str, npt.NDArray[Any]] = {
            "time_s": vd.time_s, "cycle": np.empty(0, np.int32), "step": np.empty(0, np.int32),
            "current_A": vd.current_A, "voltage_V": vd.voltage_V,
            "charge_capacity_Ah": vd.time_s, "discharge_capacity_Ah": vd.time_s,
            "temperature_C": vd.time_s, "record_seq": np.empty(0, np.int64),
        }  # fmt: skip
        return NormalizedRun(empty, np.empty(0, np.int8))
    lengths = np.diff(np.append(seg_starts, n))
    dq = np.nan_to_num(np.asarray(vd.dq_Ah, dtype=np.float64), nan=0.0)
    q_seg = np.add.reduceat(dq, seg_starts)
    imax = np.maximum.reduceat(np.nan_to_num(np.abs(vd.current_A)), seg_starts)
    kind_seg = _segment_kinds(q_seg, imax, vd.kind_hint[seg_starts])
    cyc_seg = _segment_cycles(kind_seg, q_seg)
    kind = np.repeat(kind_seg, lengths)
    cycle = np.repeat(cyc_seg, lengths)
    idle = np.repeat(np.isin(kind_seg, _REST_LIKE), lengths)
    dq = np.where(idle, 0.0, dq)
    cyc_starts = _starts(cycle)
    cols: dict[str, npt.NDArray[Any]] = {}
    for name, part in (("charge_capacity_Ah", np.maximum(dq, 0.0)),
                       ("discharge_capacity_Ah", np.maximum(-dq, 0.0))):  # fmt: skip
        total = np.cumsum(part)
        before = np.concatenate(([0.0], total[cyc_starts[1:] - 1]))
        cols[name] = total - np.repeat(before, np.diff(np.append(cyc_starts, n)))
    temp = vd.temperature_C if vd.temperature_C is not None else np.full(n, np.nan)
    columns: dict[str, npt.NDArray[Any]] = {
        "time_s": np.asarray(vd.time_s, dtype=np.float64),
        "cycle": cycle.astype(np.int32),
        "step": np.asarray(vd.source_step, dtype=np.int32),
        "current_A": np.asarray(vd.current_A, dtype=np.float64),
        "voltage_V": np.asarray(vd.voltage_V, dtype=np.float64),
        "charge_capacity_Ah": cols["charge_capacity_Ah"],
        "discharge_capacity_Ah": cols["discharge_capacity_Ah"],
        "temperature_C": np.asarray(temp, dtype=np.float64),
        "record_seq": np.arange(n, dtype=np.int64),
    }
    cmap = _cycle_map(cycle, cyc_starts, vd.source_cycle, n)
    return NormalizedRun(columns, kind.astype(np.int8), cmap)


def spectrum_cycle(run: NormalizedRun, source_cycle: int | None, time_s: float | None) -> int:
    """labrig's cycle for a spectrum: the cycle running at its time, else the first cycle
    with the vendor's cycle number, else 0 (before any cycling)."""
    if len(run) and time_s is not None and np.isfinite(time_s):
        t = run.columns["time_s"]
        k = int(np.searchsorted(t, time_s, side="right")) - 1
        return int(run.columns["cycle"][max(k, 0)]) if k >= 0 else 0
    if source_cycle is not None:
        for row in run.cycle_map:
            if row["source_cycle"] == source_cycle:
                return int(row["cycle"])
    return 0
