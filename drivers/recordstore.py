"""Records a host-side channel collects, numbered once, read by sequence number; and the
running totals (charge, energy) of the step being recorded."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import RecordBatch

__all__ = ["RecordStore", "StepTally"]

FloatArray = npt.NDArray[np.float64]


@dataclass(slots=True)
class StepTally:
    """Running totals of the step being recorded (charge by the trapezoid rule)."""

    step_id: int
    t0_s: float  # channel time at the step's start
    charge_Ah: float = 0.0
    energy_Wh: float = 0.0
    last_t: float | None = None
    last_i: float = 0.0
    last_v: float = float("nan")
    last_technique: int = 0
    rows: int = 0

    def add(
        self, t: FloatArray, i: FloatArray, v: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Append rows (channel time, A, V); their cumulative charge in the step."""
        n = t.size
        q = np.empty(n)
        tt = np.concatenate([[self.t0_s if self.last_t is None else self.last_t], t])
        ii = np.concatenate([[i[0] if self.last_t is None else self.last_i], i])
        vv = np.concatenate([[v[0] if self.last_t is None else self.last_v], v])
        dt = np.diff(tt)
        dq = 0.5 * (ii[1:] + ii[:-1]) * dt / 3600.0
        de = 0.5 * (ii[1:] * vv[1:] + ii[:-1] * vv[:-1]) * dt / 3600.0
        q[:] = self.charge_Ah + np.cumsum(dq)
        self.charge_Ah = float(q[-1])
        self.energy_Wh += float(de.sum())
        self.last_t, self.last_i, self.last_v = float(t[-1]), float(i[-1]), float(v[-1])
        self.rows += n
        return t, i, q


@dataclass
class RecordStore:
    """Chunks of records with running sequence numbers from 1."""

    chunks: list[RecordBatch] = field(default_factory=list)
    _last: list[int] = field(default_factory=list)
    last_seq: int = 0
    last_time: float = 0.0

    def add(self, step_id: int, t: FloatArray, i: FloatArray, v: FloatArray, q: FloatArray) -> None:
        n = t.size
        if n == 0:
            return
        seq = np.arange(self.last_seq + 1, self.last_seq + 1 + n, dtype=np.int64)
        self.last_seq += n
        self.chunks.append(
            RecordBatch(
                seq=seq, time_s=t.astype(np.float64), step_id=np.full(n, step_id, np.int64),
                current_A=i.astype(np.float64), voltage_V=v.astype(np.float64),
                step_charge_Ah=q.astype(np.float64), temperature_C=np.full(n, np.nan),
            )
        )  # fmt: skip
        self._last.append(self.last_seq)
        self.last_time = max(self.last_time, float(t[-1]))

    def after(self, seq: int) -> RecordBatch:
        k = bisect.bisect_right(self._last, seq)
        parts = self.chunks[k:]
        if not parts:
            return RecordBatch.empty()
        first = parts[0]
        if int(first.seq[0]) <= seq:
            parts = [first.select(first.seq > seq), *parts[1:]]
        return RecordBatch.concat(parts)
