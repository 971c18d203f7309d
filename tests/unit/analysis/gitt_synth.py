"""GITT transients with a known answer: spherical particles under constant flux.

The surface concentration of a sphere of radius R under a constant inward flux J from
t = 0 (Crank, *The Mathematics of Diffusion*, 1975, eq. 6.57 for a constant flux) is

    c_s(t) · D / (J R) = 3θ + 1/5 − 2 Σ_n exp(−α_n² θ) / α_n²,   θ = D t / R²,

with α_n the positive roots of tan α = α. Early on it grows as 2 √(θ/π) (semi-infinite
diffusion, the regime Weppner and Huggins assume); after θ ≈ 0.1 the particle's centre
feels the flux and it grows linearly. A pulse is the flux switched on and off again
(superposition), and the voltage is E = E_base + κ c_s + I R_ohm (a constant dE/dc).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from labrig.protocols.analysis.loader import KIND_CODES, TimeSeries

FloatArr = npt.NDArray[np.float64]


@lru_cache(maxsize=1)
def _roots(n: int = 4000) -> FloatArr:
    k = np.arange(1, n + 1)
    x = (k + 0.5) * np.pi - 1.0 / ((k + 0.5) * np.pi)
    for _ in range(40):  # Newton on tan x - x, started next to each asymptote
        x = x - (np.tan(x) - x) / (np.tan(x) ** 2)
    return np.asarray(x, dtype=np.float64)


@lru_cache(maxsize=1)
def _table() -> tuple[FloatArr, FloatArr]:
    theta = np.geomspace(1e-7, 50.0, 3000)
    a2 = _roots() ** 2
    series = np.array([np.sum(np.exp(-a2 * th) / a2) for th in theta])
    u = 3.0 * theta + 0.2 - 2.0 * series
    # below the table: the semi-infinite limit 2 sqrt(theta/pi) (exact to < 0.1 % there)
    return theta, u


def sphere_surface(theta: FloatArr) -> FloatArr:
    """Dimensionless surface concentration c_s D/(J R) at θ = D t/R² (0 for θ <= 0)."""
    th = np.asarray(theta, dtype=float)
    grid, u = _table()
    out = np.zeros_like(th)
    small = (th > 0) & (th < grid[0])
    out[small] = 2.0 * np.sqrt(th[small] / math.pi)
    mid = (th >= grid[0]) & (th <= grid[-1])
    out[mid] = np.interp(np.log(th[mid]), np.log(grid), u)
    big = th > grid[-1]
    out[big] = 3.0 * th[big] + 0.2
    return out


@dataclass
class Gitt:
    series: TimeSeries
    radius_cm: float
    d_cm2_s: float


def sphere_gitt(
    *,
    radius_cm: float,
    d_cm2_s: float,
    pulse_s: float,
    rest_s: float,
    n_pulses: int = 5,
    current_A: float = 1e-4,
    des_per_pulse_V: float = 0.01,
    r_ohm: float = 50.0,
    noise_V: float = 2e-4,
    pulse_every_s: float = 1.0,
    rest_every_s: float = 10.0,
    seed: int = 0,
) -> Gitt:
    """Charge pulses on spherical particles; ΔE_s per pulse is ``des_per_pulse_V``."""
    td = radius_cm**2 / d_cm2_s  # diffusion time R²/D
    theta_tau = pulse_s / td
    kappa = des_per_pulse_V / (3.0 * theta_tau)  # V per unit of c_s D/(J R)
    lead = 600.0
    parts: list[tuple[str, FloatArr, float]] = [("rest", np.arange(10.0, lead + 1, 10.0), 0.0)]
    t0 = lead
    starts: list[float] = []
    for _ in range(n_pulses):
        starts.append(t0)
        parts.append(("pulse_charge", t0 + np.arange(pulse_every_s, pulse_s + 1e-9,
                                                     pulse_every_s), current_A))  # fmt: skip
        t0 += pulse_s
        parts.append(("rest", t0 + np.arange(rest_every_s, rest_s + 1e-9, rest_every_s), 0.0))
        t0 += rest_s
    return Gitt(
        _series(parts, starts, pulse_s, td, kappa, r_ohm, noise_V, seed), radius_cm, d_cm2_s
    )


def _series(
    parts: Sequence[tuple[str, FloatArr, float]],
    starts: Sequence[float],
    pulse_s: float,
    td: float,
    kappa: float,
    r_ohm: float,
    noise_V: float,
    seed: int,
) -> TimeSeries:
    t = np.concatenate([p[1] for p in parts])
    current = np.concatenate([np.full(p[1].size, p[2]) for p in parts])
    kind = np.concatenate([np.full(p[1].size, KIND_CODES[p[0]], np.int8) for p in parts])
    step = np.concatenate([np.full(p[1].size, k + 1, np.int32) for k, p in enumerate(parts)])
    cs = np.zeros_like(t)
    for s0 in starts:
        cs += sphere_surface((t - s0) / td) - sphere_surface((t - s0 - pulse_s) / td)
    rng = np.random.default_rng(seed)
    v = 3.2 + kappa * cs + current * r_ohm + noise_V * rng.standard_normal(t.size)
    return TimeSeries(
        {
            "time_s": t,
            "cycle": np.ones(t.size, np.int32),
            "step": step,
            "kind": kind,
            "current_A": current,
            "voltage_V": v,
        }
    )


def drifting_gitt(
    *,
    n_pulses: int = 84,
    pulse_s: float = 600.0,
    rest_s: float = 4 * 3600.0,
    drift_V_per_h: float = 1.6e-5,
    noise_V: float = 2e-4,
    seed: int = 1,
) -> TimeSeries:
    """A long GITT as a real cell gives it: √t pulses, relaxations of a few minutes that
    are long over after 4 h, and a slow drift of the whole trace (self-discharge)."""
    rng = np.random.default_rng(seed)
    ts: list[FloatArr] = []
    vs: list[FloatArr] = []
    kinds: list[npt.NDArray[np.int8]] = []
    cur: list[FloatArr] = []
    t0, e_relaxed, current = 3600.0, 3.0, 1.6e-4
    ts.append(np.arange(10.0, t0 + 1e-9, 10.0))  # the relaxed cell before the first pulse
    vs.append(np.full(ts[-1].size, e_relaxed))
    kinds.append(np.full(ts[-1].size, KIND_CODES["rest"], np.int8))
    cur.append(np.zeros(ts[-1].size))
    for _ in range(n_pulses):
        tp = t0 + np.arange(1.0, pulse_s + 1e-9, 1.0)
        rise = 0.004 * np.sqrt(tp - t0)
        ts.append(tp)
        vs.append(e_relaxed + current * 60.0 + rise)
        kinds.append(np.full(tp.size, KIND_CODES["pulse_charge"], np.int8))
        cur.append(np.full(tp.size, current))
        t0 += pulse_s
        e_after = e_relaxed + 0.010
        top = float(vs[-1][-1]) - e_after
        tr = t0 + np.arange(10.0, rest_s + 1e-9, 10.0)
        vs.append(e_after + top * np.exp(-(tr - t0) / 300.0))
        ts.append(tr)
        kinds.append(np.full(tr.size, KIND_CODES["rest"], np.int8))
        cur.append(np.zeros(tr.size))
        t0 += rest_s
        e_relaxed = e_after
    t = np.concatenate(ts)
    v = np.concatenate(vs) + drift_V_per_h * t / 3600.0 + noise_V * rng.standard_normal(t.size)
    kind = np.concatenate(kinds)
    step = np.cumsum(np.diff(kind, prepend=-1) != 0).astype(np.int32)
    return TimeSeries(
        {
            "time_s": t,
            "cycle": np.ones(t.size, np.int32),
            "step": step,
            "kind": kind,
            "current_A": np.concatenate(cur),
            "voltage_V": v,
        }
    )
