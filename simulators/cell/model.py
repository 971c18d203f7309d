"""The cell's state and its exact evolution under constant current.

State: bulk SOC, the surface-minus-bulk SOC offset ``delta`` (solid diffusion), the two
RC voltages ``v1``/``v2``, how much formation charge is still to be consumed, and the
counters that drive ageing (charge throughput, calendar age).

Under a constant terminal current ``I`` of which ``I_li`` lithiates (the rest feeds side
reactions), every state variable has a closed form in time: SOC is linear, ``delta`` and
the RC voltages are exponentials. :class:`CCPiece` evaluates those forms on whole time
grids at once (numpy) and at single instants (for exact event refinement). Constant
voltage holds go through :func:`cv_substep`, which finds the current ramp over a short
interval that puts the terminal voltage exactly on the set point at its end, using the
exact responses of the RC parts and the diffusion lag to a current ramp.

Coefficients that depend on ageing, formation and temperature (:class:`Coeffs`) are taken
at the start of each step and held for the step: the change within one step is far below
anything a measurement resolves, and it keeps the step's solution closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from .ocv import OcvCurve
from .params import CellParams

__all__ = [
    "CCPiece",
    "CellModel",
    "CellState",
    "Coeffs",
    "cv_substep",
    "deta_ct",
    "eta_ct",
    "holding_current",
]

FloatArray = npt.NDArray[np.float64]
K_B_EV = 8.617333262e-5  # Boltzmann constant, eV/K


@dataclass(frozen=True, slots=True)
class CellState:
    """Everything that evolves. Charges in Ah, times in s, voltages in V."""

    soc: float
    """Bulk state of charge (0 = fully lithiated cathode, 1 = the curve's top)."""
    delta: float = 0.0
    """Surface SOC minus bulk SOC (solid-diffusion lag)."""
    v1: float = 0.0
    v2: float = 0.0
    formation_left_Ah: float = 0.0
    throughput_Ah: float = 0.0
    """|charge| passed through the cell in total (drives cycle ageing)."""
    side_Ah: float = 0.0
    """Charge that went into side reactions in total (did not lithiate)."""
    li_Ah: float = 0.0
    """Net charge that moved lithium out of the cathode in total (+ on charge)."""
    age_s: float = 0.0

    @property
    def surface_soc(self) -> float:
        return self.soc + self.delta


@dataclass(frozen=True, slots=True)
class Coeffs:
    """Coefficients for one step: capacity, effective resistances, time constants."""

    q_C: float  # capacity in coulombs
    rs: float  # instantaneous ohmic series resistance (bulk + grain boundary)
    vt2: float  # 2 k T / e: Butler-Volmer scale of the charge-transfer overpotential
    r1: float
    tau1: float
    r2: float
    tau2: float
    taud: float
    gain: float
    f_form: float
    f_side: float
    r_bulk: float
    r_gb: float
    r_ct: float


def eta_ct(co: Coeffs, current: float) -> float:
    """Charge-transfer overpotential (symmetric Butler-Volmer, small-signal slope r_ct)."""
    return co.vt2 * math.asinh(current * co.r_ct / co.vt2)


def deta_ct(co: Coeffs, current: float) -> float:
    """d(eta_ct)/dI."""
    x = current * co.r_ct / co.vt2
    return co.r_ct / math.sqrt(1.0 + x * x)


class CellModel:
    """Parameters plus the OCV curve; pure functions of a :class:`CellState`."""

    def __init__(self, params: CellParams) -> None:
        self.params = params
        self.ocv_curve = OcvCurve(params.anode_potential_V, params.ocv_offset_V)

    def fresh_state(self) -> CellState:
        """The cell as built: pristine, relaxed, formation still to come."""
        p = self.params
        return CellState(
            soc=p.initial_soc,
            formation_left_Ah=p.formation_capacity_mAh_g * p.cam_mass_g * 1e-3,
        )

    # --- derived quantities ----------------------------------------------------------------
    def equivalent_cycles(self, state: CellState) -> float:
        """Equivalent full cycles: throughput / (2 x fresh capacity)."""
        return state.throughput_Ah / (2.0 * self.params.capacity_Ah)

    def capacity_Ah(self, state: CellState) -> float:
        """Present full-width capacity after cycle and calendar fade."""
        p = self.params
        n = self.equivalent_cycles(state)
        days = state.age_s / 86400.0
        frac = (
            1.0
            - p.fade_sqrt * math.sqrt(n)
            - p.fade_linear * n
            - p.fade_calendar_sqrt_day * math.sqrt(days)
        )
        return p.capacity_Ah * max(frac, 0.05)

    def formation_progress(self, state: CellState) -> float:
        total = self.params.formation_capacity_mAh_g * self.params.cam_mass_g * 1e-3
        if total <= 0:
            return 1.0
        return min(1.0, max(0.0, 1.0 - state.formation_left_Ah / total))

    def arrhenius(self, ea_eV: float, temperature_C: float) -> float:
        """Factor on a resistance at ``temperature_C`` relative to ``t_ref_C``."""
        t = temperature_C + 273.15
        t_ref = self.params.t_ref_C + 273.15
        if t <= 0:
            raise ValueError(f"temperature must be above absolute zero, got {temperature_C} °C")
        return math.exp(ea_eV / K_B_EV * (1.0 / t - 1.0 / t_ref))

    def coeffs(self, state: CellState, temperature_C: float) -> Coeffs:
        """Coefficients for a step starting in ``state`` at ``temperature_C``."""
        p = self.params
        a_el = self.arrhenius(p.ea_electrolyte_eV, temperature_C)
        a_if = self.arrhenius(p.ea_interface_eV, temperature_C)
        a_d = self.arrhenius(p.ea_diffusion_eV, temperature_C)
        growth = 1.0 + p.r_growth_sqrt * math.sqrt(self.equivalent_cycles(state))
        form = 1.0 + p.r_ct_formation_gain * self.formation_progress(state)
        r_bulk = p.r_bulk_ohm * a_el
        r_gb = p.r_gb_ohm * a_el
        r_ct = p.r_ct_ohm * a_if * growth * form
        # RC pairs keep their capacitance: tau scales with R.
        k = a_if * growth
        return Coeffs(
            q_C=self.capacity_Ah(state) * 3600.0,
            rs=r_bulk + r_gb,
            vt2=2.0 * K_B_EV * (temperature_C + 273.15),
            r1=p.r1_ohm * k,
            tau1=p.tau1_s * k,
            r2=p.r2_ohm * k,
            tau2=p.tau2_s * k,
            taud=p.tau_diff_s * a_d,
            gain=p.diff_gain,
            f_form=p.formation_fraction,
            f_side=p.side_fraction,
            r_bulk=r_bulk,
            r_gb=r_gb,
            r_ct=r_ct,
        )

    def rest_voltage(self, state: CellState) -> float:
        """Terminal voltage at zero current (what a voltmeter reads on open circuit)."""
        return self.ocv_curve.scalar(state.surface_soc) + state.v1 + state.v2

    def equilibrium_voltage(self, state: CellState) -> float:
        """The fully relaxed OCV of the bulk SOC."""
        return self.ocv_curve.scalar(state.soc)

    def rest(self, state: CellState, duration_s: float, temperature_C: float) -> CellState:
        """State after resting (zero current) for ``duration_s``."""
        if duration_s <= 0:
            return state
        co = self.coeffs(state, temperature_C)
        return CCPiece(self, co, state, 0.0, 0.0, formation=False).state_at(duration_s)

    def pieces_current(self, co: Coeffs, state: CellState, current_A: float) -> tuple[float, bool]:
        """Lithiating current for ``current_A`` in ``state`` and whether formation runs."""
        if current_A > 0:
            if state.formation_left_Ah > 0 and co.f_form > 0:
                return current_A * (1.0 - co.f_form), True
            return current_A * (1.0 - co.f_side), False
        return current_A, False


class CCPiece:
    """Closed-form evolution from ``state`` under constant current.

    ``i_li`` is the part of ``current`` that lithiates; ``formation`` says the side part
    consumes the formation budget (so the piece is valid only until that is used up, see
    :attr:`t_valid`).
    """

    __slots__ = (
        "a1", "a2", "ad", "co", "current", "dss", "formation", "i_li", "model", "ocv",
        "rate", "s0", "state", "t_valid", "v_inf",
    )  # fmt: skip

    def __init__(
        self,
        model: CellModel,
        co: Coeffs,
        state: CellState,
        current: float,
        i_li: float,
        formation: bool,
    ) -> None:
        self.model = model
        self.ocv = model.ocv_curve
        self.co = co
        self.state = state
        self.current = current
        self.i_li = i_li
        self.formation = formation
        self.rate = i_li / co.q_C  # dSOC/dt
        self.dss = co.gain * co.taud * self.rate
        self.s0 = state.soc + self.dss
        self.ad = state.delta - self.dss
        self.a1 = state.v1 - current * co.r1
        self.a2 = state.v2 - current * co.r2
        self.v_inf = current * (co.rs + co.r1 + co.r2) + eta_ct(co, current)
        side = current - i_li
        if formation and side > 0:
            self.t_valid = state.formation_left_Ah * 3600.0 / side
        else:
            self.t_valid = math.inf

    def voltage(self, t: FloatArray) -> FloatArray:
        """Terminal voltage at times ``t`` (s since the piece began)."""
        co = self.co
        soc_s = self.s0 + self.rate * t + self.ad * np.exp(-t / co.taud)
        v: FloatArray = (
            self.ocv(soc_s)
            + self.v_inf
            + self.a1 * np.exp(-t / co.tau1)
            + self.a2 * np.exp(-t / co.tau2)
        )
        return v

    def voltage_at(self, t: float) -> float:
        co = self.co
        soc_s = self.s0 + self.rate * t + self.ad * math.exp(-t / co.taud)
        return (
            self.ocv.scalar(soc_s)
            + self.v_inf
            + self.a1 * math.exp(-t / co.tau1)
            + self.a2 * math.exp(-t / co.tau2)
        )

    def dvdt(self, t: FloatArray) -> FloatArray:
        """dV/dt at times ``t``."""
        co = self.co
        ed = np.exp(-t / co.taud)
        soc_s = self.s0 + self.rate * t + self.ad * ed
        d_soc = self.rate - self.ad / co.taud * ed
        out: FloatArray = (
            self.ocv.slope(soc_s) * d_soc
            - self.a1 / co.tau1 * np.exp(-t / co.tau1)
            - self.a2 / co.tau2 * np.exp(-t / co.tau2)
        )
        return out

    def dvdt_at(self, t: float) -> float:
        return float(self.dvdt(np.array([t]))[0])

    def state_at(self, t: float) -> CellState:
        """The full state ``t`` seconds into the piece."""
        co = self.co
        st = self.state
        side_Ah = (self.current - self.i_li) * t / 3600.0
        form_left = st.formation_left_Ah
        if self.formation:
            form_left = max(0.0, form_left - side_Ah)
        return replace(
            st,
            soc=st.soc + self.rate * t,
            delta=self.dss + self.ad * math.exp(-t / co.taud),
            v1=self.current * co.r1 + self.a1 * math.exp(-t / co.tau1),
            v2=self.current * co.r2 + self.a2 * math.exp(-t / co.tau2),
            formation_left_Ah=form_left,
            throughput_Ah=st.throughput_Ah + abs(self.current) * t / 3600.0,
            side_Ah=st.side_Ah + side_Ah,
            li_Ah=st.li_Ah + self.i_li * t / 3600.0,
            age_s=st.age_s + t,
        )


def _ramp(x0: float, target0: float, target1: float, dt: float, tau: float) -> float:
    """Exact end value of x' = (target(t) - x)/tau over dt with target linear in t."""
    slope = (target1 - target0) / dt
    e = math.exp(-dt / tau)
    return target1 - slope * tau + (x0 - target0 + slope * tau) * e


def _substep(
    model: CellModel, co: Coeffs, st: CellState, dt: float, i0: float, i1: float
) -> tuple[float, CellState]:
    """Terminal voltage at the end of ``dt`` and the state there, for a current going
    linearly from ``i0`` to ``i1`` (exact for that input; formation clipped exactly)."""
    q_C = 0.5 * (i0 + i1) * dt  # charge passed
    side_C = 0.0
    form_left = st.formation_left_Ah
    if q_C > 0:
        if form_left > 0 and co.f_form > 0:
            side_C = min(co.f_form * q_C, form_left * 3600.0)
            form_left = max(0.0, form_left - side_C / 3600.0)
        else:
            side_C = co.f_side * q_C
    keep = 1.0 - side_C / q_C if q_C > 0 else 1.0  # lithiating share of the current
    k = co.gain * co.taud * keep / co.q_C
    soc = st.soc + (q_C - side_C) / co.q_C
    delta = _ramp(st.delta, k * i0, k * i1, dt, co.taud)
    v1 = _ramp(st.v1, co.r1 * i0, co.r1 * i1, dt, co.tau1)
    v2 = _ramp(st.v2, co.r2 * i0, co.r2 * i1, dt, co.tau2)
    v = model.ocv_curve.scalar(soc + delta) + i1 * co.rs + eta_ct(co, i1) + v1 + v2
    new = CellState(
        soc=soc,
        delta=delta,
        v1=v1,
        v2=v2,
        formation_left_Ah=form_left,
        throughput_Ah=st.throughput_Ah + abs(q_C) / 3600.0,
        side_Ah=st.side_Ah + side_C / 3600.0,
        li_Ah=st.li_Ah + (q_C - side_C) / 3600.0,
        age_s=st.age_s + dt,
    )
    return v, new


def holding_current(model: CellModel, co: Coeffs, st: CellState, v_set: float) -> float:
    """The current that puts the terminal voltage on ``v_set`` at this instant."""
    base = model.rest_voltage(st)

    def f(i: float) -> float:
        return base + i * co.rs + eta_ct(co, i) - v_set

    hi = 1e-3
    while f(hi) < 0:
        hi *= 4.0
    lo = -1e-3
    while f(lo) > 0:
        lo *= 4.0
    return float(brentq(f, lo, hi, xtol=1e-18, rtol=1e-15, maxiter=200))


def cv_substep(
    model: CellModel,
    co: Coeffs,
    st: CellState,
    dt: float,
    v_set: float,
    clamp_A: float,
    i0: float,
) -> tuple[float, float, CellState]:
    """Hold ``v_set`` for ``dt`` starting at current ``i0``.

    Returns (current at the end, terminal voltage at the end, state at the end). The
    current goes linearly from ``i0`` to the end value, which is chosen so the terminal
    voltage at the end equals ``v_set`` (implicit and second-order accurate; the RC and
    diffusion parts use their exact responses to a ramp, and the charge passed is exactly
    the ramp's). If holding needs more than ``clamp_A`` the channel runs at the clamp
    (the voltage is then short of the set point), as a channel in current limit does.
    """

    def f(i: float) -> float:
        return _substep(model, co, st, dt, i0, i)[0] - v_set

    e1 = math.exp(-dt / co.tau1)
    e2 = math.exp(-dt / co.tau2)
    # d(V_end)/d(i1), OCV linearised: each ramp-driven state responds with the weight of
    # the end value in its exact ramp solution
    w1 = 1.0 - co.tau1 / dt * (1.0 - e1)
    w2 = 1.0 - co.tau2 / dt * (1.0 - e2)
    ed = math.exp(-dt / co.taud)
    wd = 1.0 - co.taud / dt * (1.0 - ed)
    i = i0
    ok = False
    for _ in range(12):
        err = f(i)
        if abs(err) < 1e-12:
            ok = True
            break
        dsoc = 0.5 * dt / co.q_C + co.gain * co.taud / co.q_C * wd
        slope = (
            model.ocv_curve.slope_scalar(st.soc + st.delta) * dsoc
            + co.rs
            + co.r1 * w1
            + co.r2 * w2
            + deta_ct(co, i)
        )
        i -= err / slope
    if not ok:
        hi = max(abs(i0), clamp_A, 1e-3)
        lo = -hi
        while f(hi) < 0:
            hi *= 4.0
        while f(lo) > 0:
            lo *= 4.0
        i = float(brentq(f, lo, hi, xtol=1e-18, rtol=1e-15, maxiter=200))
    if clamp_A > 0 and abs(i) > clamp_A:
        i = math.copysign(clamp_A, i)
    v, new = _substep(model, co, st, dt, i0, i)
    return i, v, new
