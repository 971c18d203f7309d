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

The formula assumes semi-infinite diffusion during the pulse, which shows as E linear in
√t. ΔE_t is therefore taken from a straight-line fit of E against √t over the pulse:
ΔE_t = slope · √τ, which also removes the iR step at t = 0. Each pulse is flagged when

- ``tau_not_short``: τ·D/ℓ² exceeds ``max_dtau_ratio`` (ℓ = L, or r for spheres), i.e.
  τ ≪ ℓ²/D does not hold;
- ``not_sqrt_t_linear``: the E–√t slope of the late half of the pulse differs from the
  early half by more than ``max_slope_change`` (or R² < ``min_r2``);
- ``not_relaxed``: the voltage still drifts at the end of the rest after the pulse: the
  change over the rest's last 10 %, extrapolated to the rest's whole length, exceeds
  ``max_relax_drift`` x ΔE_s;
- ``no_rest_after`` / ``too_few_points``: the pulse cannot be evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .loader import KIND_NAMES, PULSE_CODES, REST_CODES, TimeSeries
from .segments import Segments, segment_series

__all__ = ["GittGeometry", "gitt_analysis", "weppner_huggins_D"]


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


def gitt_analysis(
    ts: TimeSeries,
    geometry: GittGeometry,
    *,
    segments: Segments | None = None,
    fit_from: float = 0.1,
    max_dtau_ratio: float = 0.1,
    max_slope_change: float = 0.2,
    min_r2: float = 0.98,
    max_relax_drift: float = 0.05,
    max_plain_pulse_s: float = 3600.0,
    min_points: int = 6,
) -> pd.DataFrame:
    """One row per GITT pulse: τ, ΔE_s, ΔE_t, D (cm²/s) and the validity flags.

    ``fit_from`` is the fraction of τ from which E vs √t is fitted (the first moments
    carry the faster polarisations). Pulses are the ``pulse_charge``/``pulse_discharge``
    steps, or when there are none, current steps of at most ``max_plain_pulse_s`` between
    two rests.
    """
    cols = ["pulse", "cycle", "direction", "t_start_s", "tau_s", "current_A", "E0_V", "Es_V",
            "delta_Es_V", "delta_Et_V", "slope_V_sqrt_s", "r2", "slope_change", "D_cm2_s",
            "dtau_over_l2", "valid", "flags"]  # fmt: skip
    seg = segments if segments is not None else segment_series(ts)
    if len(seg) == 0 or "voltage_V" not in ts:
        return pd.DataFrame(columns=cols)
    l_ratio = geometry.volume_over_area_cm()
    ell = geometry.diffusion_length_cm()
    t = ts["time_s"]
    v = ts["voltage_V"]
    i = ts.cols.get("current_A", np.full(len(ts), np.nan))
    rows: list[dict[str, Any]] = []
    for n, j in enumerate(_pulse_indices(seg, max_plain_pulse_s), start=1):
        flags: list[str] = []
        a, b = int(seg.start[j]), int(seg.stop[j])
        tp = t[a:b]
        vp = v[a:b]
        dt_rec = float(np.median(np.diff(tp))) if b - a > 1 else 0.0
        if a > 0:
            t0 = max(float(t[a - 1]), float(tp[0]) - dt_rec)
            e0 = float(v[a - 1])
        else:
            t0 = float(tp[0]) - dt_rec
            e0 = float("nan")
            flags.append("no_rest_before")
        tau = float(tp[-1]) - t0
        rel = tp - t0
        sel = rel >= fit_from * tau
        slope = r2 = change = float("nan")
        if np.count_nonzero(sel) < min_points or tau <= 0:
            flags.append("too_few_points")
        else:
            x = np.sqrt(rel[sel])
            y = vp[sel]
            slope, icpt = np.polyfit(x, y, 1)
            resid = y - (slope * x + icpt)
            ss = float(((y - y.mean()) ** 2).sum())
            r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else float("nan")
            half = x.size // 2
            if half >= 3:
                s1 = np.polyfit(x[:half], y[:half], 1)[0]
                s2 = np.polyfit(x[half:], y[half:], 1)[0]
                change = float(abs(s2 - s1) / abs(slope)) if slope != 0 else float("inf")
            if (math.isfinite(change) and change > max_slope_change) or (
                math.isfinite(r2) and r2 < min_r2
            ):
                flags.append("not_sqrt_t_linear")
        det = float(slope) * math.sqrt(tau) if math.isfinite(slope) and tau > 0 else float("nan")
        es = float("nan")
        if j + 1 < len(seg) and int(seg.kind[j + 1]) in REST_CODES:
            ra, rb = int(seg.start[j + 1]), int(seg.stop[j + 1])
            es = float(v[rb - 1])
            rt = t[ra:rb]
            if rb - ra >= 3:
                tail = rt >= rt[-1] - 0.1 * (rt[-1] - float(tp[-1]))
                # drift over the last 10 %, extrapolated to the whole rest (x10)
                drift = 10.0 * float(v[ra:rb][tail][-1] - v[ra:rb][tail][0])
                des = es - e0
                if math.isfinite(des) and des != 0 and abs(drift) > max_relax_drift * abs(des):
                    flags.append("not_relaxed")
        else:
            flags.append("no_rest_after")
        des = es - e0
        d = weppner_huggins_D(tau, des, det, l_ratio) if math.isfinite(det) else float("nan")
        ratio = d * tau / ell**2 if math.isfinite(d) else float("nan")
        if math.isfinite(ratio) and ratio > max_dtau_ratio:
            flags.append("tau_not_short")
        rows.append(
            {
                "pulse": n,
                "cycle": int(seg.cycle[j]),
                "direction": "charge" if float(np.nanmean(i[a:b])) > 0 else "discharge",
                "t_start_s": t0,
                "tau_s": tau,
                "current_A": float(np.nanmean(i[a:b])),
                "E0_V": e0,
                "Es_V": es,
                "delta_Es_V": des,
                "delta_Et_V": det,
                "slope_V_sqrt_s": float(slope),
                "r2": r2,
                "slope_change": change,
                "D_cm2_s": d,
                "dtau_over_l2": ratio,
                "valid": not flags and math.isfinite(d),
                "flags": ",".join(flags),
            }
        )
    return pd.DataFrame(rows, columns=cols)
