"""Record rules of a step run: which instants a cycler keeps (every s, dV, dI).

Split from :mod:`simulators.cell.runner` (the physics of a step): the runner computes the
cell on time grids, this module decides which of those points become records.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .model import CCPiece

__all__ = ["EARLY", "Recorder", "keep_dv", "members", "merge_sorted", "record_cc"]

FloatArray = npt.NDArray[np.float64]
#: the first seconds of a step, where the RC parts move fast, sampled on a log grid
EARLY = np.geomspace(1e-3, 60.0, 28)


class Recorder:
    """The records of one step run, kept by its record rule (every s, dV, dI)."""

    def __init__(self, every_s: float | None, dv: float | None, di: float | None) -> None:
        self.every = every_s
        self.dv = dv
        self.di = di
        self.t: list[FloatArray] = []
        self.i: list[FloatArray] = []
        self.v: list[FloatArray] = []
        self.q: list[FloatArray] = []
        self.last_v: float | None = None
        self.last_i: float | None = None
        self.last_t = -math.inf

    def grid(self, ta: float, tb: float, include_ta: bool) -> FloatArray:
        """Record-rule times in [ta, tb) (step time), plus ``ta`` if asked."""
        if self.every is None:
            g = np.empty(0)
        else:
            k0 = math.ceil(ta / self.every - 1e-9)
            k1 = math.ceil(tb / self.every - 1e-9)
            g = np.arange(k0, max(k0, k1), dtype=np.float64) * self.every
            g = g[(g >= ta) & (g < tb)]
        if include_ta and (g.size == 0 or g[0] > ta):
            g = np.concatenate(([ta], g))
        return g

    def add(self, t: FloatArray, i: FloatArray, v: FloatArray, q: FloatArray) -> None:
        if t.size == 0:
            return
        if t[0] <= self.last_t:  # the same instant recorded twice: keep the later values
            self._drop_last()
        self.t.append(t)
        self.i.append(i)
        self.v.append(v)
        self.q.append(q)
        self.last_t = float(t[-1])
        self.last_v = float(v[-1])
        self.last_i = float(i[-1])

    def add1(self, t: float, i: float, v: float, q: float) -> None:
        self.add(np.array([t]), np.array([i]), np.array([v]), np.array([q]))

    def _drop_last(self) -> None:
        while self.t:
            a = self.t[-1]
            if a.size > 1:
                self.t[-1], self.i[-1] = a[:-1], self.i[-1][:-1]
                self.v[-1], self.q[-1] = self.v[-1][:-1], self.q[-1][:-1]
                return
            self.t.pop(), self.i.pop(), self.v.pop(), self.q.pop()
            return

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        if not self.t:
            e = np.empty(0)
            return e, e.copy(), e.copy(), e.copy()
        return (
            np.concatenate(self.t),
            np.concatenate(self.i),
            np.concatenate(self.v),
            np.concatenate(self.q),
        )


def record_cc(
    rec: Recorder, piece: CCPiece, ta: float, q: float, t_end: float, include_start: bool,
    h: float,
) -> None:  # fmt: skip
    """Record a constant-current piece from step time ``ta`` for ``t_end`` seconds by the
    record rule: the grid times, plus points where V moves by dV (refined where it does)."""
    tr = rec.grid(ta, ta + t_end, include_start)
    if rec.dv is not None and t_end > 0 and rec.every is not None:
        # Start from the record times (plus the first seconds, where the RC parts
        # move fast) and refine only where V changes by more than dV/2 between
        # neighbours: between record times V is monotone in a CC step, so nowhere
        # else can it move by dV. Far cheaper than a fine grid over the whole step.
        base = merge_sorted(tr, ta + EARLY[t_end > EARLY])
        if base.size == 0 or base[0] > ta:
            base = np.concatenate(([ta], base))
        base = np.append(base[base < ta + t_end], ta + t_end)
        vb = piece.voltage(base - ta)
        for _ in range(3):
            jump = np.abs(np.diff(vb))
            steep = jump > rec.dv / 2.0
            if not steep.any():
                break
            m = np.where(steep, np.minimum(1000, np.ceil(4.0 * jump / rec.dv)), 1.0)
            m = m.astype(np.int64)
            owner = np.repeat(np.arange(m.size), m)
            offset = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
            width = np.diff(base)
            base = np.append(base[:-1][owner] + width[owner] * offset / m[owner], base[-1])
            vb = piece.voltage(base - ta)
        base, vb = base[:-1], vb[:-1]  # the step's end point is recorded separately
        forced = members(base, tr)
        tr = base[keep_dv(vb, forced, rec.last_v, rec.dv)]
    elif rec.dv is not None and t_end > 0:
        n = max(2, math.ceil(t_end / min(h, 1.0)) + 1)
        td = np.union1d(np.linspace(0.0, t_end, n), EARLY[t_end > EARLY]) + ta
        td = td[td < ta + t_end]
        vd = piece.voltage(td - ta)
        for _ in range(3):  # refine where V moves more than dV/2 between points
            jump = np.abs(np.diff(vd))
            big = np.nonzero(jump > rec.dv / 2.0)[0]
            if big.size == 0:
                break
            extra = [
                np.linspace(td[k], td[k + 1], min(1000, math.ceil(4 * jump[k] / rec.dv)) + 1)
                for k in big
            ]
            td = np.union1d(td, np.concatenate(extra))
            vd = piece.voltage(td - ta)
        allt = np.union1d(td, tr)
        forced = np.isin(allt, tr)
        vv = piece.voltage(allt - ta)
        tr = allt[keep_dv(vv, forced, rec.last_v, rec.dv)]
    if tr.size:
        rel = tr - ta
        rec.add(tr, np.full(tr.size, piece.current), piece.voltage(rel),
                q + piece.current * rel / 3600.0)  # fmt: skip


def merge_sorted(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``np.union1d`` of two sorted arrays (b short), without sorting ``a`` again."""
    if b.size == 0:
        return a if a.size < 2 or bool(np.all(a[1:] > a[:-1])) else np.unique(a)
    out = np.insert(a, np.searchsorted(a, b), b)
    keep = np.empty(out.size, dtype=bool)
    keep[0] = True
    np.greater(out[1:], out[:-1], out=keep[1:])
    return out[keep]


def members(
    x: npt.NDArray[np.float64], sorted_set: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """``np.isin(x, sorted_set)`` for a sorted ``sorted_set`` (a binary search each)."""
    if sorted_set.size == 0:
        return np.zeros(x.shape, dtype=bool)
    idx = np.searchsorted(sorted_set, x).clip(0, sorted_set.size - 1)
    found: npt.NDArray[np.bool_] = sorted_set[idx] == x
    return found


def keep_dv(
    v: npt.NDArray[np.float64], forced: npt.NDArray[np.bool_], last: float | None, dv: float
) -> npt.NDArray[np.bool_]:
    """Which points to record: every forced point, and a point whenever V has moved by
    ``dv`` since the last recorded one (``last``: the last recorded V before these).

    Same result as walking the points one by one, but vectorised: between two forced
    points nothing is kept unless V leaves the band around the segment's first value,
    so only segments where it does are walked point by point.
    """
    n = v.size
    keep = forced.copy()
    if n == 0:
        return keep
    idx = np.arange(n)
    anchor_idx = np.maximum.accumulate(np.where(forced, idx, -1))
    if last is None and anchor_idx[0] < 0:
        keep[0] = True
        anchor_idx = np.maximum.accumulate(np.where(keep, idx, -1))
    anchor_v = np.where(anchor_idx >= 0, v[np.maximum(anchor_idx, 0)], np.nan)
    if last is not None:
        anchor_v = np.where(anchor_idx < 0, last, anchor_v)
    moved = ~keep & (np.abs(v - anchor_v) >= dv)
    if not moved.any():
        return keep
    # walk only the segments (between forced points) that contain a candidate
    seg = np.where(anchor_idx >= 0, anchor_idx, -1)
    seg_ids = np.unique(seg[moved])
    forced_idx = np.flatnonzero(forced)
    lo_all = np.maximum(seg_ids, 0)
    nxt = np.searchsorted(forced_idx, lo_all, side="right")
    if forced_idx.size:
        following = forced_idx[np.minimum(nxt, forced_idx.size - 1)]
        hi_all = np.where(nxt < forced_idx.size, following, n)
    else:
        hi_all = np.full(seg_ids.size, n)
    vl = v.tolist()
    picked: list[int] = []
    for s_id, lo, hi in zip(seg_ids.tolist(), lo_all.tolist(), hi_all.tolist(), strict=True):
        ref = vl[s_id] if s_id >= 0 else (last if last is not None else vl[0])
        j = lo if s_id < 0 else lo + 1
        while j < hi:
            if hi - j > 256:  # a long stretch: let numpy find the next point out of the band
                band = np.flatnonzero(np.abs(v[j:hi] - ref) >= dv)
                if band.size == 0:
                    break
                k = j + int(band[0])
            else:
                k = hi
                for i in range(j, hi):
                    if abs(vl[i] - ref) >= dv:
                        k = i
                        break
                if k == hi:
                    break
            picked.append(k)
            ref = vl[k]
            j = k + 1
    keep[picked] = True
    return keep
