"""GITT: chemical diffusion coefficient per current pulse (Weppner–Huggins).

Reference: W. Weppner and R. A. Huggins, "Determination of the kinetic parameters of
mixed-conducting electrodes and application to the system Li3Sb",
J. Electrochem. Soc. 124 (1977) 1569–1578, eq. (32)::

    D = 4 / (π τ) · (m_B V_M / (M_B S))² · (ΔE_s / ΔE_t)²        valid for τ ≪ L²/D

with τ the pulse length, m_B the active mass, V_M its molar volume, M_B its molar mass,
S the electrode/electrolyte contact area (so m_B V_M / (M_B S) = L, the volume over the
area: the diffusion length of a planar electrode), ΔE_s the change of the relaxed
(steady-state) voltage caused by the pulse, and ΔE_t the voltage change during the pulse
without the iR drop. For spherical particles of radius r the volume over the surface is
r/3, which gives the often-used form::

    D = 4 r² / (9 π τ) · (ΔE_s / ΔE_t)²

The formula assumes semi-infinite diffusion during the pulse (τ ≪ ℓ²/D), which shows as
E linear in √t. ΔE_t is therefore taken from a straight-line fit of E against √t over the
pulse: ΔE_t = slope · √τ, which also removes the iR step at t = 0.

Whether τ ≪ ℓ²/D holds is judged from the transient itself, never from the D the same
pulse gives: with that D, D·τ/ℓ² reduces to 4/(9π)·(ΔE_s/ΔE_t)² (spheres), whatever the
pulse length or radius, so it cannot tell a long pulse. Once diffusion reaches the
particle's centre (or the film's back face) the transient turns from √t to linear in t,
so in E–√t coordinates it bends upwards. A quadratic fit E = a + b√t + c·t over the fit
window gives ``sqrt_t_departure`` = the change of dE/d√t across the window over its mean,
with its standard error from the fit: for spheres it is ≈ 0.04 at D·τ/R² = 0.001, 0.13
at 0.01, 0.42 at 0.1 and 1 from D·τ/R² ≈ 1 on. Each pulse is flagged when

- ``tau_not_short``: ``sqrt_t_departure`` exceeds ``max_departure`` by more than three
  standard errors: the pulse is too long for the particles (shorten it);
- ``not_sqrt_t_linear``: otherwise, R² of the √t line below ``min_r2`` or a departure
  below ``-max_departure`` (bending downwards: a slower polarisation still building up);
- ``not_relaxed``: a straight line through the last ``relax_tail`` of the rest after the
  pulse has a slope that differs from zero by more than three standard errors (the
  noise of the records sets them) and, extrapolated over the rest's whole length, moves
  the voltage by more than ``max_relax_drift`` x ΔE_s;
- ``no_rest_after`` / ``no_rest_before`` / ``too_few_points``: the pulse cannot be evaluated.

``soc`` is the state of charge after the pulse within its titration (consecutive pulses
of one direction): the charge passed so far over the titration's total, rising from 0
to 1 on charge and falling from 1 to 0 on discharge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .loader import KIND_NAMES, PULSE_CODES, REST_CODES, TimeSeries
from .segments import Segments, segment_series

__all__ = ["COLUMNS", "GittCriteria", "GittGeometry", "gitt_analysis", "weppner_huggins_D"]

FloatArr = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GittGeometry:
    """What the Weppner–Huggins formula needs besides the voltages.

    Give either the planar set (``molar_volume_cm3_mol``, ``molar_mass_g_mol``,
    ``area_cm2`` and ``mass_g``; the mass defaults to the run's CAM mass) or
    ``particle_radius_cm`` for spherical particles. D comes out in cm²/s.
    """

    molar_volume_cm3_mol: float | None = None
    molar_mass_g_mol: float | None = None
    area_cm2: float | None = None
    mass_g: float | None = None
    particle_radius_cm: float | None = None

    def __post_init__(self) -> None:
        for name in ("molar_volume_cm3_mol", "molar_mass_g_mol", "area_cm2", "mass_g",
                     "particle_radius_cm"):  # fmt: skip
            v = getattr(self, name)
            if v is not None and (not math.isfinite(v) or v <= 0):
                raise ValueError(f"GittGeometry.{name} must be a positive number, got {v!r}")

    def with_mass(self, mass_g: float | None) -> GittGeometry:
        if self.mass_g is not None or mass_g is None:
            return self
        return GittGeometry(
            self.molar_volume_cm3_mol, self.molar_mass_g_mol, self.area_cm2, mass_g,
            self.particle_radius_cm,
        )  # fmt: skip

    def describe(self) -> str:
        """The geometry in words: 'spheres of radius 2.5 µm' or the planar set."""
        if self.particle_radius_cm is not None:
            return f"spheres of radius {self.particle_radius_cm * 1e4:g} µm"
        parts = [f"{k} {v:g}" for k, v in (("V_M", self.molar_volume_cm3_mol),
                 ("M", self.molar_mass_g_mol), ("S", self.area_cm2), ("m", self.mass_g))
                 if v is not None]  # fmt: skip
        return "planar electrode (" + ", ".join(parts) + ")"

    @property
    def spherical(self) -> bool:
        return self.particle_radius_cm is not None

    def volume_over_area_cm(self) -> float:
        """m V_M / (M S) for the planar form, r/3 for spheres."""
        if self.particle_radius_cm is not None:
            return self.particle_radius_cm / 3.0
        need = {
            "molar_volume_cm3_mol": self.molar_volume_cm3_mol,
            "molar_mass_g_mol": self.molar_mass_g_mol,
            "area_cm2": self.area_cm2,
            "mass_g": self.mass_g,
        }
        missing = [k for k, v in need.items() if v is None]
        if missing:
            raise ValueError(
                "GITT needs particle_radius_cm, or all of molar_volume_cm3_mol, "
                f"molar_mass_g_mol, area_cm2 and mass_g (missing: {', '.join(missing)})"
            )
        assert self.mass_g and self.molar_volume_cm3_mol and self.molar_mass_g_mol
        assert self.area_cm2
        return self.mass_g * self.molar_volume_cm3_mol / (self.molar_mass_g_mol * self.area_cm2)

    def diffusion_length_cm(self) -> float:
        """ℓ in the validity condition τ ≪ ℓ²/D: L (planar) or the radius (spheres)."""
        if self.particle_radius_cm is not None:
            return self.particle_radius_cm
        return self.volume_over_area_cm()


def weppner_huggins_D(
    tau_s: float, delta_es_V: float, delta_et_V: float, volume_over_area_cm: float
) -> float:
    """D (cm²/s) = 4/(π τ) · (V/S)² · (ΔE_s/ΔE_t)², Weppner & Huggins (1977) eq. 32."""
    if tau_s <= 0 or delta_et_V == 0 or not math.isfinite(delta_es_V):
        return float("nan")
    return 4.0 / (math.pi * tau_s) * volume_over_area_cm**2 * (delta_es_V / delta_et_V) ** 2


def _pulse_indices(seg: Segments, max_plain_pulse_s: float) -> list[int]:
    pulses = np.flatnonzero(np.isin(seg.kind, PULSE_CODES)).tolist()
    if pulses:
        return pulses
    # no pulse steps: short current steps between two rests are pulses as well
    out: list[int] = []
    active = {KIND_NAMES.index(k) for k in ("charge", "discharge")}
    for j in range(1, len(seg) - 1):
        if (
            int(seg.kind[j]) in active
            and int(seg.kind[j - 1]) in REST_CODES
            and int(seg.kind[j + 1]) in REST_CODES
            and seg.t_last[j] - seg.t_last[j - 1] <= max_plain_pulse_s
        ):
            out.append(j)
    return out


@dataclass(frozen=True)
class _SqrtFit:
    slope: float = float("nan")
    r2: float = float("nan")
    departure: float = float("nan")
    departure_se: float = float("nan")


def _sqrt_t_fit(rel: FloatArr, v: FloatArr, sel: npt.NDArray[np.bool_]) -> _SqrtFit:
    """Line and parabola in √t over the selected records (see the module docstring)."""
    x = np.sqrt(rel[sel])
    y = v[sel]
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else float("nan")
    if slope == 0 or x.size < 6 or float(x[-1] - x[0]) <= 0:
        return _SqrtFit(float(slope), r2)
    coef, cov = np.polyfit(x, y, 2, cov=True)
    span = float(x[-1] - x[0])
    dep = 2.0 * float(coef[0]) * span / float(slope)
    se = 2.0 * math.sqrt(max(float(cov[0, 0]), 0.0)) * span / abs(float(slope))
    return _SqrtFit(float(slope), r2, dep, se)


def _drift(t: FloatArr, v: FloatArr, tail: float, min_points: int) -> tuple[float, float]:
    """Slope (V/s) of a line through the last ``tail`` of a rest, and its standard error."""
    if t.size < 3:
        return float("nan"), float("nan")
    keep = t >= t[-1] - tail * (t[-1] - t[0])
    if np.count_nonzero(keep) < min_points:
        keep = np.zeros(t.size, dtype=bool)
        keep[-min(min_points, t.size) :] = True
    x = t[keep] - t[keep].mean()
    y = v[keep]
    sxx = float((x**2).sum())
    if x.size < 3 or sxx <= 0:
        return float("nan"), float("nan")
    slope = float((x * (y - y.mean())).sum()) / sxx
    resid = y - y.mean() - slope * x
    s2 = float((resid**2).sum()) / (x.size - 2)
    return slope, math.sqrt(s2 / sxx)


def _titration_soc(rows: list[dict[str, Any]]) -> None:
    """Add ``charge_mAh`` (passed so far in the titration) and ``soc`` to the rows."""
    k = 0
    while k < len(rows):
        m = k
        while m + 1 < len(rows) and rows[m + 1]["direction"] == rows[k]["direction"]:
            m += 1
        q = np.cumsum([abs(r["current_A"]) * r["tau_s"] / 3.6 for r in rows[k : m + 1]])
        total = float(q[-1]) if q.size and q[-1] > 0 else float("nan")
        for r, qk in zip(rows[k : m + 1], q, strict=True):
            r["charge_mAh"] = float(qk)
            frac = float(qk) / total
            r["soc"] = frac if r["direction"] == "charge" else 1.0 - frac
        k = m + 1


COLUMNS = ["pulse", "cycle", "direction", "soc", "charge_mAh", "t_start_s", "tau_s",
           "current_A", "E0_V", "Es_V", "delta_Es_V", "delta_Et_V", "slope_V_sqrt_s", "r2",
           "sqrt_t_departure", "sqrt_t_departure_se", "relax_drift_mV_h", "D_cm2_s",
           "valid", "flags"]  # fmt: skip


@dataclass(frozen=True)
class GittCriteria:
    """Thresholds of the validity flags (see the module docstring)."""

    fit_from: float = 0.1
    max_departure: float = 0.2
    min_r2: float = 0.98
    relax_tail: float = 0.25
    max_relax_drift: float = 0.05
    max_plain_pulse_s: float = 3600.0
    min_points: int = 6


def _pulse_row(
    ts: TimeSeries, seg: Segments, j: int, l_ratio: float, c: GittCriteria
) -> dict[str, Any]:
    t, v = ts["time_s"], ts["voltage_V"]
    i = ts.cols.get("current_A", np.full(len(ts), np.nan))
    flags: list[str] = []
    a, b = int(seg.start[j]), int(seg.stop[j])
    tp, vp = t[a:b], v[a:b]
    dt_rec = float(np.median(np.diff(tp))) if b - a > 1 else 0.0
    t0 = max(float(t[a - 1]), float(tp[0]) - dt_rec) if a > 0 else float(tp[0]) - dt_rec
    e0 = float(v[a - 1]) if a > 0 else float("nan")
    if a == 0:
        flags.append("no_rest_before")
    tau = float(tp[-1]) - t0
    rel = tp - t0
    sel = rel >= c.fit_from * tau
    fit = _SqrtFit()
    if np.count_nonzero(sel) < c.min_points or tau <= 0:
        flags.append("too_few_points")
    else:
        fit = _sqrt_t_fit(rel, vp, sel)
        dep, se = fit.departure, fit.departure_se
        if math.isfinite(dep) and dep > c.max_departure and dep - 3.0 * se > c.max_departure:
            flags.append("tau_not_short")
        elif (math.isfinite(fit.r2) and fit.r2 < c.min_r2) or (
            math.isfinite(dep) and dep < -c.max_departure and dep + 3.0 * se < -c.max_departure
        ):
            flags.append("not_sqrt_t_linear")
    det = fit.slope * math.sqrt(tau) if math.isfinite(fit.slope) and tau > 0 else float("nan")
    es = drift = float("nan")
    if j + 1 < len(seg) and int(seg.kind[j + 1]) in REST_CODES:
        ra, rb = int(seg.start[j + 1]), int(seg.stop[j + 1])
        es = float(np.median(v[max(ra, rb - 3) : rb]))
        drift, drift_se = _drift(t[ra:rb], v[ra:rb], c.relax_tail, c.min_points)
        moved = abs(drift) * (float(t[rb - 1]) - float(tp[-1]))
        des = es - e0
        if (
            math.isfinite(drift)
            and abs(drift) > 3.0 * drift_se
            and math.isfinite(des)
            and moved > c.max_relax_drift * abs(des)
        ):
            flags.append("not_relaxed")
    else:
        flags.append("no_rest_after")
    des = es - e0
    d = weppner_huggins_D(tau, des, det, l_ratio) if math.isfinite(det) else float("nan")
    current = float(np.nanmean(i[a:b]))
    return {
        "cycle": int(seg.cycle[j]),
        "direction": "charge" if current > 0 else "discharge",
        "t_start_s": t0,
        "tau_s": tau,
        "current_A": current,
        "E0_V": e0,
        "Es_V": es,
        "delta_Es_V": des,
        "delta_Et_V": det,
        "slope_V_sqrt_s": fit.slope,
        "r2": fit.r2,
        "sqrt_t_departure": fit.departure,
        "sqrt_t_departure_se": fit.departure_se,
        "relax_drift_mV_h": drift * 3.6e6,
        "D_cm2_s": d,
        "valid": not flags and math.isfinite(d),
        "flags": ",".join(flags),
    }


def gitt_analysis(
    ts: TimeSeries,
    geometry: GittGeometry,
    *,
    segments: Segments | None = None,
    criteria: GittCriteria | None = None,
) -> pd.DataFrame:
    """One row per GITT pulse: SOC, τ, ΔE_s, ΔE_t, D (cm²/s) and the validity flags.

    ``criteria.fit_from`` is the fraction of τ from which E vs √t is fitted (the first
    moments carry the faster polarisations). Pulses are the ``pulse_charge`` /
    ``pulse_discharge`` steps or, when there are none, current steps of at most
    ``criteria.max_plain_pulse_s`` between two rests.
    """
    c = criteria or GittCriteria()
    seg = segments if segments is not None else segment_series(ts)
    if len(seg) == 0 or "voltage_V" not in ts:
        return pd.DataFrame(columns=COLUMNS)
    l_ratio = geometry.volume_over_area_cm()
    rows = [
        {"pulse": n, **_pulse_row(ts, seg, j, l_ratio, c)}
        for n, j in enumerate(_pulse_indices(seg, c.max_plain_pulse_s), start=1)
    ]
    _titration_soc(rows)
    return pd.DataFrame(rows, columns=COLUMNS)
