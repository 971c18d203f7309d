"""Step segments of the time series, relaxed voltages, overpotentials and DC resistance.

A *segment* is a maximal run of records with the same cycle, step id and step type: one
executed step. All reductions use the segment boundaries with ``np.*.reduceat`` so a
multi-million-row run reduces in a few passes over the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .loader import (
    CHARGE_CODES,
    DISCHARGE_CODES,
    KIND_CODES,
    KIND_NAMES,
    REST_CODES,
    TimeSeries,
)

__all__ = [
    "Segments",
    "dc_resistance",
    "rest_relaxation",
    "segment_series",
]

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]


@dataclass
class Segments:
    """One row per executed step (numpy columns, in record order)."""

    start: IntArr
    """Index of the segment's first record."""
    stop: IntArr
    """Index one past the segment's last record."""
    cycle: IntArr
    step: IntArr
    kind: npt.NDArray[np.int8]
    t_first: FloatArr
    t_last: FloatArr
    v_first: FloatArr
    v_last: FloatArr
    i_first: FloatArr
    i_last: FloatArr
    i_mean: FloatArr

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @property
    def n_records(self) -> IntArr:
        return self.stop - self.start

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "cycle": self.cycle,
                "step": self.step,
                "step_type": [KIND_NAMES[k] for k in self.kind.tolist()],
                "records": self.n_records,
                "t_first_s": self.t_first,
                "t_last_s": self.t_last,
                "v_first_V": self.v_first,
                "v_last_V": self.v_last,
                "i_mean_A": self.i_mean,
            }
        )


def _starts(*keys: npt.NDArray[Any]) -> IntArr:
    n = keys[0].shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    change = np.zeros(n - 1, dtype=bool)
    for k in keys:
        change |= k[1:] != k[:-1]
    return np.concatenate(([0], np.flatnonzero(change) + 1)).astype(np.int64)


def segment_series(ts: TimeSeries) -> Segments:
    """Split the records into step segments (cycle, step id and step type constant)."""
    n = len(ts)
    if n == 0:
        e = np.empty(0)
        ei = np.empty(0, dtype=np.int64)
        return Segments(ei, ei, ei, ei, np.empty(0, np.int8), e, e, e, e, e, e, e)
    cycle = ts["cycle"]
    step = ts.cols.get("step", np.zeros(n, dtype=np.int32))
    kind = ts.cols.get("kind", np.zeros(n, dtype=np.int8))
    start = _starts(cycle, step, kind)
    stop = np.append(start[1:], n)
    last = stop - 1
    v = ts.cols.get("voltage_V", np.full(n, np.nan))
    i = ts.cols.get("current_A", np.full(n, np.nan))
    counts = (stop - start).astype(np.float64)
    i_mean = np.add.reduceat(i, start) / counts
    t = ts["time_s"]
    return Segments(
        start=start,
        stop=stop,
        cycle=cycle[start].astype(np.int64),
        step=step[start].astype(np.int64),
        kind=kind[start],
        t_first=t[start],
        t_last=t[last],
        v_first=v[start],
        v_last=v[last],
        i_first=i[start],
        i_last=i[last],
        i_mean=i_mean,
    )


def rest_relaxation(seg: Segments, min_duration_s: float = 0.0) -> pd.DataFrame:
    """Relaxed voltage at the end of each rest and the overpotential it implies.

    For every rest/OCV segment that follows a current step: ``relaxed_voltage_V`` is the
    last voltage of the rest, ``loaded_voltage_V`` the last voltage of the preceding
    current step and ``overpotential_V`` = loaded - relaxed (positive after a charge,
    negative after a discharge). ``rest_s`` is the rest's length; rests shorter than
    ``min_duration_s`` are left out.
    """
    rows: list[dict[str, Any]] = []
    active = set(CHARGE_CODES + DISCHARGE_CODES + (KIND_CODES["hold"],))
    for j in np.flatnonzero(np.isin(seg.kind, REST_CODES)).tolist():
        # a rest's length counts from the end of the step before it
        t0 = float(seg.t_last[j - 1]) if j > 0 else float(seg.t_first[j])
        dur = float(seg.t_last[j]) - t0
        if dur < min_duration_s:
            continue
        prev = j - 1
        after = None
        if prev >= 0 and int(seg.kind[prev]) in active:
            after = KIND_NAMES[int(seg.kind[prev])]
        loaded = float(seg.v_last[prev]) if after is not None else float("nan")
        relaxed = float(seg.v_last[j])
        rows.append(
            {
                "cycle": int(seg.cycle[j]),
                "step": int(seg.step[j]),
                "after": after or "",
                "rest_s": dur,
                "loaded_voltage_V": loaded,
                "relaxed_voltage_V": relaxed,
                "overpotential_V": loaded - relaxed,
                "t_end_s": float(seg.t_last[j]),
            }
        )
    cols = [
        "cycle", "step", "after", "rest_s", "loaded_voltage_V", "relaxed_voltage_V",
        "overpotential_V", "t_end_s",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def dc_resistance(
    ts: TimeSeries,
    seg: Segments,
    *,
    min_delta_A: float | None = None,
    after_s: float | None = None,
) -> pd.DataFrame:
    """DC resistance R = ΔV/ΔI at every current step (onset and interruption).

    ΔV and ΔI are taken between the last record before the step change and the first
    record of the new step (or the first record at least ``after_s`` after the change, to
    read a resistance at a fixed time such as 10 s). ``dt_s`` says how long after the
    change the voltage was read: with coarse logging the value includes part of the
    faster polarisations, as on any cycler. Changes with |ΔI| below ``min_delta_A``
    (default: 0.5 % of the largest current) are skipped.
    """
    cols = ["cycle", "step", "step_type", "transition", "delta_I_A", "delta_V_V",
            "resistance_ohm", "dt_s", "t_s"]  # fmt: skip
    if len(seg) < 2 or "voltage_V" not in ts or "current_A" not in ts:
        return pd.DataFrame(columns=cols)
    t = ts["time_s"]
    v = ts["voltage_V"]
    i = ts["current_A"]
    if min_delta_A is None:
        imax = float(np.nanmax(np.abs(i))) if i.size else 0.0
        min_delta_A = max(0.005 * imax, 1e-12)
    j = np.arange(1, len(seg))
    before = seg.stop[j - 1] - 1
    first = seg.start[j]
    read = first.copy()
    if after_s is not None and after_s > 0:
        target = t[before] + after_s
        # first record of the step at or after the target, but not past the step's end
        pos = np.searchsorted(t, target, side="left")
        read = np.clip(np.maximum(pos, first), first, seg.stop[j] - 1)
    di = i[read] - i[before]
    dv = v[read] - v[before]
    keep = np.abs(di) >= min_delta_A
    j, di, dv, read, before = j[keep], di[keep], dv[keep], read[keep], before[keep]
    i_before = i[before]
    transition = np.where(np.abs(i_before) < 0.5 * np.abs(di), "onset", "interruption")
    transition = np.where(
        (np.abs(i_before) >= 0.5 * np.abs(di)) & (np.abs(i[read]) >= 0.5 * np.abs(di)),
        "change",
        transition,
    )
    return pd.DataFrame(
        {
            "cycle": seg.cycle[j],
            "step": seg.step[j],
            "step_type": [KIND_NAMES[k] for k in seg.kind[j].tolist()],
            "transition": transition,
            "delta_I_A": di,
            "delta_V_V": dv,
            "resistance_ohm": dv / di,
            "dt_s": t[read] - t[before],
            "t_s": t[read],
        },
        columns=cols,
    )
