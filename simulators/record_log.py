"""The records a simulated channel holds: numbered chunks, visible once their time comes.

:class:`simulators.engine.ChannelEngine` computes a block ahead of time; its records wait
here with their absolute times and running sequence numbers, and a query at ``now`` sees
only those recorded by then. Cutting a block short (pause, stop, a new temperature) drops
the records after the cut, and numbering continues after the last one kept.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["RECORD_COLUMNS", "RecordLog"]

RECORD_COLUMNS: tuple[str, ...] = (
    "seq", "time_s", "step_id", "current_A", "voltage_V", "step_charge_Ah", "temperature_C",
)  # fmt: skip

Columns = dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64]]


@dataclass(slots=True)
class _Chunk:
    seq: npt.NDArray[np.int64]
    t_abs: npt.NDArray[np.float64]
    cols: Columns


class RecordLog:
    """Records in time order, numbered from 1."""

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []
        self._last_seq: list[int] = []  # the last sequence number of each chunk
        self._next_seq = 1

    def append(self, t_abs: npt.NDArray[np.float64], cols: Columns) -> None:
        """Add records at absolute times ``t_abs`` (every column but ``seq``)."""
        n = int(t_abs.size)
        if n == 0:
            return
        seq = np.arange(self._next_seq, self._next_seq + n, dtype=np.int64)
        self._next_seq += n
        self._chunks.append(_Chunk(seq, t_abs, cols))
        self._last_seq.append(int(seq[-1]))

    def after(self, seq: int, now: float) -> dict[str, npt.NDArray[Any]]:
        """Records numbered above ``seq`` and recorded by ``now``, as columns."""
        i0 = bisect.bisect_right(self._last_seq, seq)
        parts: list[dict[str, npt.NDArray[Any]]] = []
        for ch in self._chunks[i0:]:
            if ch.t_abs.size == 0 or ch.t_abs[0] > now:
                break
            m = (ch.seq > seq) & (ch.t_abs <= now)
            if m.any():
                part: dict[str, npt.NDArray[Any]] = {"seq": ch.seq[m]}
                for k, v in ch.cols.items():
                    part[k] = v[m]
                parts.append(part)
        if not parts:
            return {
                c: np.empty(0, dtype=np.int64 if c in ("seq", "step_id") else np.float64)
                for c in RECORD_COLUMNS
            }
        return {c: np.concatenate([p[c] for p in parts]) for c in RECORD_COLUMNS}

    def last_seq(self, now: float) -> int:
        """The number of the newest record visible at ``now`` (0 before the first)."""
        for ch in reversed(self._chunks):
            if ch.t_abs.size and ch.t_abs[0] <= now:
                k = int(np.searchsorted(ch.t_abs, now, side="right"))
                return int(ch.seq[k - 1])
        return 0

    def latest(self, now: float, since_abs: float, step_id: int) -> tuple[float, float] | None:
        """Voltage and current of the newest record at or before ``now``, if it belongs to
        step ``step_id`` and was taken at or after ``since_abs``."""
        for ch in reversed(self._chunks):
            if ch.t_abs.size == 0 or ch.t_abs[0] > now:
                continue
            k = int(np.searchsorted(ch.t_abs, now, side="right")) - 1
            if k < 0 or ch.t_abs[k] < since_abs:
                return None
            if int(ch.cols["step_id"][k]) != step_id:
                return None
            return float(ch.cols["voltage_V"][k]), float(ch.cols["current_A"][k])
        return None

    def reaches(self, now: float) -> bool:
        """Whether the newest record sits at ``now`` (or later)."""
        return (
            bool(self._chunks)
            and self._chunks[-1].t_abs.size > 0
            and (self._chunks[-1].t_abs[-1] >= now - 1e-12)
        )

    def drop_after(self, now: float) -> None:
        """Forget records after ``now``; numbering continues after the last one kept."""
        while self._chunks:
            ch = self._chunks[-1]
            if ch.t_abs.size and ch.t_abs[0] > now:
                self._chunks.pop()
                self._last_seq.pop()
                continue
            m = ch.t_abs <= now
            if not m.all():
                ch.seq, ch.t_abs = ch.seq[m], ch.t_abs[m]
                ch.cols = {k: v[m] for k, v in ch.cols.items()}
                self._last_seq[-1] = int(ch.seq[-1])
            break
        self._next_seq = (self._last_seq[-1] + 1) if self._last_seq else 1
