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
from .recording import EARLY, Recorder, record_cc
from .steps import Action, Limits, SimEnd, SimStep

__all__ = ["Progress", "StepRun", "run_step"]

FloatArray = npt.NDArray[np.float64]
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
        self.rec = Recorder(rule.every_s, rule.dV_V, rule.dI_A)
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
            found, tgs, vs = self._search_grid(piece, st, i_li, grid_c, need_dvdt, limit)
            if found is not None:
                consider(found[0], found[2])
            # energy over the piece up to its end
            if best is not None and best[0] <= piece.t_valid:
                t_end, _, cond = best
                record_cc(self.rec, piece, ta, q, t_end, first, self.h)
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
            record_cc(self.rec, piece, ta, q, t_end, first, self.h)
            tgc = np.concatenate(tgs)
            vgc = np.concatenate(vs)
            e += current * _integral(tgc, vgc, t_end, piece) / 3600.0
            st = piece.state_at(t_end)
            q += current * t_end / 3600.0
            ta += t_end
            first = False

    def _search_grid(
        self, piece: CCPiece, st: CellState, i_li: float, grid_c: list[_Cond],
        need_dvdt: bool, limit: float,
    ) -> tuple[tuple[float, int, _Cond] | None, list[FloatArray], list[FloatArray]]:  # fmt: skip
        """The first voltage or dV/dt condition met on ``piece`` before ``limit``: a
        search on grids of growing chunks, refined at the crossing. Returns it (or None)
        and the grids searched (for the energy integral)."""
        co = self.co
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
                tg = np.union1d(tg, EARLY[c1 > EARLY])
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
        return found, tgs, vs

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
