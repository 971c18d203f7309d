"""Run one step on the cell the way cycler firmware does: exact events, record rules.

Constant-current and rest phases are evaluated in closed form on whole time grids; an
end condition is located on the grid and then refined by Brent's method on the closed
form, so a step ends exactly on its cut-off (not one time step past it). Voltage holds
advance in short implicit sub-steps (:func:`simulators.cell.model.cv_substep`, the
current ramping linearly within each) whose length grows as the current settles; an end
on current, capacity or voltage inside a sub-step is refined by solving for the sub-step
length that meets it.

A run can start part-way through a step (``Progress``), which is how a paused step is
resumed and how a running step is cut at an instant (``cap_s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from .model import (
    CCPiece,
    CellModel,
    CellState,
    Coeffs,
    cv_substep,
    eta_ct,
    holding_current,
)
from .steps import Action, Limits, SimEnd, SimStep

__all__ = ["Progress", "StepRun", "run_step"]

FloatArray = npt.NDArray[np.float64]
_EARLY = np.geomspace(1e-3, 60.0, 28)
_TIE_S = 1e-9
_XTOL = 1e-13


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a step stands when a run of it starts (all zero for a fresh step)."""

    t_s: float = 0.0
    charge_Ah: float = 0.0
    energy_Wh: float = 0.0
    in_cv: bool = False
    cv_current_A: float = 0.0
    cross_dirs: tuple[int, ...] | None = None


@dataclass(slots=True)
class StepRun:
    """What one run of a step produced.

    Record arrays hold step time, current, voltage and step charge (noise-free). The
    summary fields describe the state at the end of this run.
    """

    t_s: FloatArray
    current_A: FloatArray
    voltage_V: FloatArray
    charge_Ah: FloatArray
    reason: str
    action: Action
    goto: int | None
    end_t_s: float
    charge_Ah_total: float
    energy_Wh: float
    end_voltage_V: float
    end_current_A: float
    state: CellState
    fault: str | None
    progress: Progress


Kind = Literal["end", "transition", "stop", "safety"]


@dataclass(slots=True)
class _Cond:
    quantity: str
    sign: int  # +1 fires when q >= value (> if strict), -1 when q <= value
    value: float
    reason: str
    action: Action
    goto: int | None
    order: int
    kind: Kind
    cv_only: bool = False
    strict: bool = False
    fault: str | None = None

    def hit(self, q: FloatArray) -> npt.NDArray[np.bool_]:
        if self.sign > 0:
            return q > self.value if self.strict else q >= self.value
        return q < self.value if self.strict else q <= self.value

    def hit1(self, q: float) -> bool:
        return bool(self.hit(np.array([q]))[0])


class _Recorder:
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


class _Runner:
    def __init__(
        self,
        model: CellModel,
        state: CellState,
        step: SimStep,
        temperature_C: float,
        limits: Limits,
        progress: Progress,
        cap_s: float | None,
        horizon_s: float,
    ) -> None:
        self.model = model
        self.step = step
        self.T = temperature_C
        self.limits = limits
        self.pr = progress
        self.co: Coeffs = model.coeffs(state, temperature_C)
        self.state0 = state
        rule = step.record
        self.rec = _Recorder(rule.every_s, rule.dV_V, rule.dI_A)
        every = rule.every_s if rule.every_s is not None else 10.0
        self.h = min(max(every, 1.0), 10.0)
        self.cv_dt_max = min(max(every, 0.5), 5.0)
        self.conds: list[_Cond] = []
        for n, e in enumerate(step.ends):
            self.conds.append(self._end(e, n, cv_only=False))
        for n, e in enumerate(step.cv_ends):
            self.conds.append(self._end(e, 100 + n, cv_only=True))
        if step.max_duration_s is not None:
            self.conds.append(
                _Cond("time", 1, step.max_duration_s, "max_duration", "next", None, 200, "stop")
            )
        if cap_s is not None:
            self.conds.append(_Cond("time", 1, cap_s, "stopped", "end_block", None, 300, "stop"))
        self.conds.append(
            _Cond(
                "time", 1, progress.t_s + horizon_s, "horizon", "abort", None, 400, "stop",
                fault="simulation horizon reached (the step has no end that comes)",
            )
        )  # fmt: skip
        lim = limits
        self.conds.append(
            _Cond(
                "voltage", 1, lim.v_max, "safety", "abort", None, 500, "safety", strict=True,
                fault=f"voltage above v_max {lim.v_max:g} V",
            )
        )  # fmt: skip
        self.conds.append(
            _Cond(
                "voltage", -1, lim.v_min, "safety", "abort", None, 501, "safety", strict=True,
                fault=f"voltage below v_min {lim.v_min:g} V",
            )
        )  # fmt: skip

    @staticmethod
    def _end(e: SimEnd, order: int, cv_only: bool) -> _Cond:
        sign = 1 if e.op == ">=" else -1
        return _Cond(e.quantity, sign, e.value, e.quantity, e.action, e.goto, order, "end",
                     cv_only=cv_only)  # fmt: skip

    # ------------------------------------------------------------------ helpers
    def _resolve_cross(self, v0: float, i0: float) -> None:
        ends = (*self.step.ends, *self.step.cv_ends)
        dirs = self.pr.cross_dirs
        if dirs is None:
            start = {"voltage": v0, "current": abs(i0), "time": self.pr.t_s,
                     "capacity": abs(self.pr.charge_Ah), "dvdt": math.inf,
                     "temperature": self.T}  # fmt: skip
            dirs = tuple(
                (1 if start[e.quantity] < e.value else -1) if e.op == "cross" else 0 for e in ends
            )
            self.pr = replace(self.pr, cross_dirs=dirs)
        for c, d in zip([c for c in self.conds if c.kind == "end"], dirs, strict=True):
            if d != 0:
                c.sign = d

    def _finish(
        self,
        cond: _Cond,
        t: float,
        st: CellState,
        q: float,
        e: float,
        v: float,
        i: float,
        in_cv: bool,
    ) -> StepRun:
        self.rec.add1(t, i, v, q)
        ts, cur, vol, chg = self.rec.arrays()
        return StepRun(
            t_s=ts, current_A=cur, voltage_V=vol, charge_Ah=chg,
            reason=cond.reason, action=cond.action, goto=cond.goto, end_t_s=t,
            charge_Ah_total=q, energy_Wh=e, end_voltage_V=v, end_current_A=i, state=st,
            fault=cond.fault,
            progress=replace(self.pr, t_s=t, charge_Ah=q, energy_Wh=e, in_cv=in_cv,
                             cv_current_A=i),
        )  # fmt: skip

    def _fault_now(self, msg: str) -> StepRun:
        st = self.state0
        v = self.model.rest_voltage(st)
        c = _Cond("current", 1, 0.0, "safety", "abort", None, 600, "safety", fault=msg)
        return self._finish(c, self.pr.t_s, st, self.pr.charge_Ah, self.pr.energy_Wh, v, 0.0,
                            self.pr.in_cv)  # fmt: skip

    # ------------------------------------------------------------------ main
    def run(self) -> StepRun:
        step, lim = self.step, self.limits
        if lim.t_max is not None and lim.t_max < self.T:
            return self._fault_now(f"temperature {self.T:g} °C above t_max {lim.t_max:g} °C")
        if step.mode in ("cc", "cccv") and abs(step.current_A) > lim.i_max * (1 + 1e-12):
            return self._fault_now(f"current {step.current_A:g} A beyond i_max {lim.i_max:g} A")
        st = self.state0
        if step.mode == "rest":
            current, v_set, clamp = 0.0, None, 0.0
        elif step.mode == "cc":
            current, v_set, clamp = step.current_A, None, 0.0
        else:
            assert step.voltage_V is not None
            v_set = step.voltage_V
            if step.mode == "cccv":
                current, clamp = step.current_A, abs(step.current_A)
            else:
                clamp = min(abs(step.current_A) or lim.i_max, lim.i_max)
                current = clamp if v_set >= self.model.rest_voltage(st) else -clamp
        if self.pr.in_cv:
            assert v_set is not None
            self._resolve_cross(v_set, self.pr.cv_current_A)
            return self._cv(st, self.pr.t_s, self.pr.charge_Ah, self.pr.energy_Wh, v_set,
                            clamp, self.pr.cv_current_A, include_start=True)  # fmt: skip
        i_li, form = self.model.pieces_current(self.co, st, current)
        v0 = CCPiece(self.model, self.co, st, current, i_li, form).voltage_at(0.0)
        self._resolve_cross(v0, current)
        return self._cc(st, current, v_set, clamp)

    # ------------------------------------------------------------------ CC / rest
    def _analytic(self, c: _Cond, ta: float, q: float, current: float) -> float | None:
        """Step-time offset from ``ta`` at which a time/capacity condition fires."""
        if c.quantity == "time":
            if c.hit1(ta):
                return 0.0
            return c.value - ta if c.sign > 0 else None
        # capacity: |q + I t / 3600|
        if c.hit1(abs(q)):
            return 0.0
        if current == 0:
            return None
        if c.sign > 0 and (q == 0 or (q > 0) == (current > 0)):
            return (c.value - abs(q)) * 3600.0 / abs(current)
        if c.sign < 0 and q != 0 and (q > 0) != (current > 0):
            return (abs(q) - c.value) * 3600.0 / abs(current)
        return None

    def _cc(self, st: CellState, current: float, v_set: float | None, clamp: float) -> StepRun:
        model, co = self.model, self.co
        ta, q, e = self.pr.t_s, self.pr.charge_Ah, self.pr.energy_Wh
        conds = [c for c in self.conds if not c.cv_only]
        if v_set is not None:
            conds.append(
                _Cond("voltage", 1 if current > 0 else -1, v_set, "cv", "next", None, 150,
                      "transition")
            )  # fmt: skip
        analytic = [c for c in conds if c.quantity in ("time", "capacity")]
        grid_c = [c for c in conds if c.quantity in ("voltage", "dvdt")]
        need_dvdt = any(c.quantity == "dvdt" for c in grid_c)
        const = [c for c in conds if c.quantity in ("current", "temperature")]
        first = True
        while True:
            i_li, form = model.pieces_current(co, st, current)
            piece = CCPiece(model, co, st, current, i_li, form)
            best: tuple[float, int, _Cond] | None = None

            def consider(t: float, c: _Cond) -> None:
                nonlocal best
                if (
                    best is None
                    or t < best[0] - _TIE_S
                    or (abs(t - best[0]) <= _TIE_S and c.order < best[1])
                ):
                    best = (t, c.order, c)

            for c in analytic:
                tr = self._analytic(c, ta, q, current)
                if tr is not None:
                    consider(max(tr, 0.0), c)
            if first:
                for c in const:
                    if c.hit1(abs(current) if c.quantity == "current" else self.T):
                        consider(0.0, c)
            limit = min(best[0] if best is not None else math.inf, piece.t_valid)
            # chunked grid search for voltage / dV/dt conditions
            if i_li != 0:
                target = 1.0 if i_li > 0 else 0.0
                span = (target - st.soc) * co.q_C / i_li
                chunk = max(600.0, 1.15 * span + 600.0)
                h = min(self.h, 0.005 * co.q_C / abs(i_li))
            else:
                chunk = 1000.0 * self.h
                h = self.h
            tgs: list[FloatArray] = []
            vs: list[FloatArray] = []
            c0 = 0.0
            found: tuple[float, int, _Cond] | None = None
            while c0 < limit or (c0 == 0.0 and limit == 0.0):
                c1 = min(limit, c0 + chunk)
                chunk *= 2.0
                n = max(2, math.ceil((c1 - c0) / h) + 1)
                tg = np.linspace(c0, c1, n)
                if c0 == 0.0:
                    tg = np.union1d(tg, _EARLY[c1 > _EARLY])
                vg = piece.voltage(tg)
                dg = np.abs(piece.dvdt(tg)) if need_dvdt else vg
                tgs.append(tg)
                vs.append(vg)
                firsts: list[tuple[int, _Cond]] = []
                for c in grid_c:
                    m = c.hit(vg if c.quantity == "voltage" else dg)
                    if m.any():
                        firsts.append((int(np.argmax(m)), c))
                if firsts:
                    kmin = min(k for k, _ in firsts)
                    for k, c in firsts:
                        if k != kmin:
                            continue
                        t_hit = self._refine(piece, c, tg, k)
                        if (
                            found is None
                            or t_hit < found[0] - _TIE_S
                            or (abs(t_hit - found[0]) <= _TIE_S and c.order < found[1])
                        ):
                            found = (t_hit, c.order, c)
                    break
                if c1 >= limit:
                    break
                c0 = c1
            if found is not None:
                consider(found[0], found[2])
            # energy over the piece up to its end
            if best is not None and best[0] <= piece.t_valid:
                t_end, _, cond = best
                self._record_cc(piece, ta, q, t_end, include_start=first)
                tgc = np.concatenate(tgs) if tgs else np.array([0.0])
                vgc = np.concatenate(vs) if vs else np.array([piece.voltage_at(0.0)])
                e += current * _integral(tgc, vgc, t_end, piece) / 3600.0
                st_end = piece.state_at(t_end)
                q_end = q + current * t_end / 3600.0
                v_end = piece.voltage_at(t_end)
                if cond.kind == "transition":
                    assert v_set is not None
                    return self._cv(st_end, ta + t_end, q_end, e, v_set, clamp, current,
                                    include_start=False)  # fmt: skip
                return self._finish(cond, ta + t_end, st_end, q_end, e, v_end, current, False)
            # the piece ended (formation used up) before any condition: continue
            t_end = piece.t_valid
            self._record_cc(piece, ta, q, t_end, include_start=first, final=False)
            tgc = np.concatenate(tgs)
            vgc = np.concatenate(vs)
            e += current * _integral(tgc, vgc, t_end, piece) / 3600.0
            st = piece.state_at(t_end)
            q += current * t_end / 3600.0
            ta += t_end
            first = False

    @staticmethod
    def _refine(piece: CCPiece, c: _Cond, tg: FloatArray, k: int) -> float:
        if k == 0:
            return float(tg[0])
        a, b = float(tg[k - 1]), float(tg[k])
        if c.quantity == "voltage":

            def f(t: float) -> float:
                return piece.voltage_at(t) - c.value
        else:

            def f(t: float) -> float:
                return abs(piece.dvdt_at(t)) - c.value

        fa, fb = f(a), f(b)
        if fa == 0.0:
            return a
        if fb == 0.0 or (fa > 0) == (fb > 0):
            return b
        t = float(brentq(f, a, b, xtol=_XTOL, rtol=1e-15, maxiter=200))
        # make sure the returned instant satisfies the condition (not a hair before it)
        if not c.hit1(f(t) + c.value):
            t2 = t
            for _ in range(60):
                t2 = math.nextafter(t2, b)
                if c.hit1(f(t2) + c.value):
                    return t2
            return b
        return t

    def _record_cc(
        self, piece: CCPiece, ta: float, q: float, t_end: float, include_start: bool,
        final: bool = True,
    ) -> None:  # fmt: skip
        rec = self.rec
        tr = rec.grid(ta, ta + t_end, include_start)
        if rec.dv is not None and t_end > 0 and rec.every is not None:
            # Start from the record times (plus the first seconds, where the RC parts
            # move fast) and refine only where V changes by more than dV/2 between
            # neighbours: between record times V is monotone in a CC step, so nowhere
            # else can it move by dV. Far cheaper than a fine grid over the whole step.
            base = _merge_sorted(tr, ta + _EARLY[t_end > _EARLY])
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
            forced = _members(base, tr)
            tr = base[_keep_dv(vb, forced, rec.last_v, rec.dv)]
        elif rec.dv is not None and t_end > 0:
            n = max(2, math.ceil(t_end / min(self.h, 1.0)) + 1)
            td = np.union1d(np.linspace(0.0, t_end, n), _EARLY[t_end > _EARLY]) + ta
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
            tr = allt[_keep_dv(vv, forced, rec.last_v, rec.dv)]
        if tr.size:
            rel = tr - ta
            rec.add(tr, np.full(tr.size, piece.current), piece.voltage(rel),
                    q + piece.current * rel / 3600.0)  # fmt: skip

    # ------------------------------------------------------------------ CV
    def _cv(
        self, st: CellState, t: float, q: float, e: float, v_set: float, clamp: float,
        current: float, include_start: bool,
    ) -> StepRun:  # fmt: skip
        model, co, rec = self.model, self.co, self.rec
        conds = [c for c in self.conds if c.quantity != "dvdt"]
        stops = [c for c in conds if c.quantity == "time"]
        others = [c for c in conds if c.quantity != "time"]

        def value(c: _Cond, i: float, v: float, qq: float) -> float:
            return {"voltage": v, "current": abs(i), "capacity": abs(qq),
                    "temperature": self.T}[c.quantity]  # fmt: skip

        v_now = v_set
        if include_start:
            # a resumed hold starts from rest: the current jumps to what holds v_set now
            current = holding_current(model, co, st, v_set)
            if abs(current) > clamp:
                current = math.copysign(clamp, current)
                v_now = model.rest_voltage(st) + current * co.rs + eta_ct(co, current)
            rec.add1(t, current, v_now, q)
        hits = [c for c in others if c.hit1(value(c, current, v_now, q))]
        hits += [c for c in stops if c.hit1(t)]
        if hits:
            c = min(hits, key=lambda c: c.order)
            return self._finish(c, t, st, q, e, v_now, current, True)
        t_stop, stop_c = math.inf, None
        for c in stops:
            if c.sign > 0 and c.value < t_stop:
                t_stop, stop_c = c.value, c
        dt = 1e-3
        every = rec.every
        while True:
            nxt = t_stop
            if every is not None:
                k = math.floor(t / every + 1e-9) + 1
                nxt = min(nxt, k * every)
            dt_use = min(dt, nxt - t)
            if nxt - t - dt_use < 1e-9:
                dt_use = nxt - t
            if dt_use <= 0:
                dt_use = 1e-9
            i, v, st_new = cv_substep(model, co, st, dt_use, v_set, clamp, current)
            q_new = q + 0.5 * (current + i) * dt_use / 3600.0
            fired = [c for c in others if c.hit1(value(c, i, v, q_new))]
            if fired:
                best_s, best_c = math.inf, fired[0]
                for c in fired:
                    s = self._refine_cv(c, st, dt_use, v_set, clamp, current, q)
                    if s < best_s - _TIE_S or (
                        abs(s - best_s) <= _TIE_S and c.order < best_c.order
                    ):
                        best_s, best_c = s, c
                if best_s <= 0:
                    return self._finish(best_c, t, st, q, e, v_now, current, True)
                i, v, st_new = cv_substep(model, co, st, best_s, v_set, clamp, current)
                q_new = q + 0.5 * (current + i) * best_s / 3600.0
                e += 0.5 * (current * v_now + i * v) * best_s / 3600.0
                return self._finish(best_c, t + best_s, st_new, q_new, e, v, i, True)
            e += 0.5 * (current * v_now + i * v) * dt_use / 3600.0
            t_new = t + dt_use
            if stop_c is not None and t_new >= t_stop - 1e-12:
                return self._finish(stop_c, t_stop, st_new, q_new, e, v, i, True)
            on_grid = every is not None and abs(t_new - nxt) < 1e-12 and nxt < t_stop
            moved = (
                rec.dv is not None and rec.last_v is not None and abs(v - rec.last_v) >= rec.dv
            ) or (rec.di is not None and rec.last_i is not None and abs(i - rec.last_i) >= rec.di)
            if on_grid or moved:
                rec.add1(nxt if on_grid else t_new, i, v, q_new)
            t, st, q, current, v_now = (nxt if on_grid else t_new), st_new, q_new, i, v
            dt = min(dt * 1.3, self.cv_dt_max)

    def _refine_cv(
        self, c: _Cond, st: CellState, dt: float, v_set: float, clamp: float, i0: float,
        q: float,
    ) -> float:  # fmt: skip
        """Length of the sub-step (<= dt) at whose end condition ``c`` is just met."""
        model, co = self.model, self.co

        def g(s: float) -> float:
            i, v, _ = cv_substep(model, co, st, s, v_set, clamp, i0)
            qq = q + 0.5 * (i0 + i) * s / 3600.0
            val = {"voltage": v, "current": abs(i), "capacity": abs(qq),
                   "temperature": self.T}[c.quantity]  # fmt: skip
            return val - c.value

        lo = dt * 1e-9
        glo, ghi = g(lo), g(dt)
        if c.hit1(glo + c.value):
            return 0.0
        if (glo > 0) == (ghi > 0) and ghi != 0:
            return dt
        s = float(brentq(g, lo, dt, xtol=1e-15, rtol=1e-15, maxiter=200))
        if not c.hit1(g(s) + c.value):
            for _ in range(60):
                s = math.nextafter(s, dt)
                if c.hit1(g(s) + c.value):
                    break
        return s


def _integral(tg: FloatArray, vg: FloatArray, t_end: float, piece: CCPiece) -> float:
    """∫V dt over [0, t_end] from grid samples (trapezoid), closing at t_end exactly."""
    m = tg < t_end
    t = np.append(tg[m], t_end)
    v = np.append(vg[m], piece.voltage_at(t_end))
    if t.size < 2:
        return 0.0
    return float(np.sum((t[1:] - t[:-1]) * (v[1:] + v[:-1]) * 0.5))


def run_step(
    model: CellModel,
    state: CellState,
    step: SimStep,
    temperature_C: float,
    limits: Limits,
    progress: Progress | None = None,
    cap_s: float | None = None,
    horizon_s: float = 1e9,
) -> StepRun:
    """Run ``step`` from ``state`` until it ends (or until step time ``cap_s``).

    ``progress`` continues a step part-way through (paused and resumed). ``horizon_s``
    bounds the run (step time beyond the start of this run) so a step whose end never
    comes faults instead of running forever.
    """
    return _Runner(model, state, step, temperature_C, limits, progress or Progress(), cap_s,
                   horizon_s).run()  # fmt: skip


def _merge_sorted(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``np.union1d`` of two sorted arrays (b short), without sorting ``a`` again."""
    if b.size == 0:
        return a if a.size < 2 or bool(np.all(a[1:] > a[:-1])) else np.unique(a)
    out = np.insert(a, np.searchsorted(a, b), b)
    keep = np.empty(out.size, dtype=bool)
    keep[0] = True
    np.greater(out[1:], out[:-1], out=keep[1:])
    return out[keep]


def _members(
    x: npt.NDArray[np.float64], sorted_set: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """``np.isin(x, sorted_set)`` for a sorted ``sorted_set`` (a binary search each)."""
    if sorted_set.size == 0:
        return np.zeros(x.shape, dtype=bool)
    idx = np.searchsorted(sorted_set, x).clip(0, sorted_set.size - 1)
    return sorted_set[idx] == x  # type: ignore[no-any-return]


def _keep_dv(
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
