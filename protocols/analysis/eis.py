"""Equivalent-circuit fits of impedance spectra (impedance.py), with uncertainties.

The default circuit for the lab's pellet cells, ``R0-p(R1,CPE1)-p(R2,CPE2)-Wo1``, reads:

- ``R0``: the high-frequency intercept: bulk solid electrolyte plus contacts;
- ``R1 ‖ CPE1``: the high-frequency arc: grain boundaries of the electrolyte;
- ``R2 ‖ CPE2``: the mid-frequency arc: the CAM|SE interface / charge transfer, the
  resistance that coatings are meant to keep low and that grows with cycling;
- ``Wo1``: a finite-length (open, reflective) Warburg: solid diffusion into the CAM.

Initial guesses come from the spectrum itself: R0 from the high-frequency intercept, arc
widths from the valleys of -Z'' between arcs, the CPE magnitude from each arc's apex
frequency (ω_apex = (R Q)^(-1/α)), the Warburg from the low-frequency tail. The fit is
weighted by |Z| (relative errors, the usual choice without measured variances) and is
started from a few guesses; the best is kept. Uncertainties are one standard deviation
from the fit's covariance matrix.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .loader import Spectrum

__all__ = [
    "DEFAULT_CIRCUIT",
    "EisFit",
    "fit_spectrum",
    "guess_parameters",
    "resistance_track",
]

DEFAULT_CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)-Wo1"

FloatArr = npt.NDArray[np.float64]
ComplexArr = npt.NDArray[np.complex128]

_ELEMENT = re.compile(r"([A-Za-z]+)(\d+)")
ROLE = {
    "R0": "bulk (HF intercept)",
    "R1": "grain boundary",
    "R2": "CAM|SE interface / charge transfer",
    "Wo1_0": "solid diffusion (Warburg)",
}


@dataclass
class EisFit:
    """The result of fitting one spectrum."""

    name: str
    cycle: int | None
    circuit: str
    param_names: list[str]
    param_units: list[str]
    values: FloatArr
    stderr: FloatArr
    initial: FloatArr
    rel_rms_pct: float
    """RMS of the residual relative to |Z|, in %."""
    ok: bool
    message: str = ""
    frequency_Hz: FloatArr = field(default_factory=lambda: np.empty(0))
    z_data: ComplexArr = field(default_factory=lambda: np.empty(0, dtype=np.complex128))
    z_fit: ComplexArr = field(default_factory=lambda: np.empty(0, dtype=np.complex128))

    def param(self, name: str) -> float:
        return float(self.values[self.param_names.index(name)])

    def param_stderr(self, name: str) -> float:
        return float(self.stderr[self.param_names.index(name)])

    @property
    def resistances(self) -> dict[str, float]:
        """Every resistance of the circuit (R elements and Warburg magnitudes)."""
        out: dict[str, float] = {}
        for n, u, v in zip(self.param_names, self.param_units, self.values, strict=True):
            if u == "Ohm":
                out[n] = float(v)
        return out

    def table(self) -> pd.DataFrame:
        """Element, value, ± one standard deviation, relative uncertainty, unit, meaning."""
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = 100.0 * self.stderr / np.abs(self.values)
        return pd.DataFrame(
            {
                "parameter": self.param_names,
                "value": self.values,
                "stderr": self.stderr,
                "rel_stderr_pct": rel,
                "unit": self.param_units,
                "meaning": [ROLE.get(n, "") for n in self.param_names],
            }
        )


def _elements(circuit: str) -> list[tuple[str, str]]:
    """(kind, name) of each element in the order impedance.py numbers the parameters."""
    return [(m.group(1), m.group(1) + m.group(2)) for m in _ELEMENT.finditer(circuit)]


def _hf_intercept(zr: FloatArr, y: FloatArr) -> float:
    """Real part where -Z'' reaches 0 on the high-frequency side (data sorted HF first)."""
    k = int(np.argmax(y > 0)) if np.any(y > 0) else 0
    if k > 0 and y[k - 1] <= 0 < y[k]:
        w = -y[k - 1] / (y[k] - y[k - 1])
        return float(zr[k - 1] + w * (zr[k] - zr[k - 1]))
    # no crossing measured: extrapolate the first points of the arc towards the axis
    return float(max(zr[0] - max(y[0], 0.0), 0.0))


def _smooth(y: FloatArr, n: int = 3) -> FloatArr:
    if y.size < 2 * n + 1:
        return y
    k = np.ones(n) / n
    return np.convolve(np.pad(y, (n // 2, n - 1 - n // 2), mode="edge"), k, mode="valid")


@dataclass
class _Arc:
    apex_f: float
    r: float


def _arcs(f: FloatArr, zr: FloatArr, y: FloatArr, r0: float) -> tuple[list[_Arc], float]:
    """Arcs (apex frequency, width) from HF to LF, and the real part where the tail begins."""
    ys = _smooth(y)
    n = ys.size
    peaks = [k for k in range(1, n - 1) if ys[k] >= ys[k - 1] and ys[k] > ys[k + 1] and ys[k] > 0]
    valleys = [k for k in range(1, n - 1) if ys[k] <= ys[k - 1] and ys[k] < ys[k + 1]]
    arcs: list[_Arc] = []
    left = r0
    for p in peaks:
        nxt = [v for v in valleys if v > p]
        # an arc that runs into the tail is about twice its apex's distance from its start
        end = float(zr[nxt[0]]) if nxt else left + 2.0 * max(float(zr[p]) - left, 0.0)
        arcs.append(_Arc(float(f[p]), max(end - left, 1e-3)))
        left = end
    return arcs, left


def guess_parameters(circuit: str, frequency_Hz: FloatArr, z: ComplexArr) -> list[float]:
    """Initial guesses for every parameter of ``circuit`` derived from the spectrum."""
    order = np.argsort(-frequency_Hz)
    f = frequency_Hz[order]
    zr = z.real[order]
    y = -z.imag[order]
    r0 = _hf_intercept(zr, y)
    arcs, tail_start = _arcs(f, zr, y, r0)
    n_arcs_needed = sum(1 for kind, _ in _elements(circuit) if kind in ("CPE", "C"))
    # too few arcs seen (merged, or cut by the range): split the span evenly on log f
    if len(arcs) < n_arcs_needed:
        span = max(float(zr.max()) - r0, 1.0)
        fs = np.logspace(np.log10(f[0]) - 1, np.log10(max(f[-1], 1e-3)) + 1, n_arcs_needed + 2)
        have = {round(math.log10(a.apex_f)) for a in arcs}
        for ff in fs[1:-1]:
            if len(arcs) >= n_arcs_needed:
                break
            if round(math.log10(ff)) not in have:
                arcs.append(_Arc(float(ff), span / (n_arcs_needed + 1)))
        arcs.sort(key=lambda a: -a.apex_f)
    lf_real = float(zr[-1])
    guesses: list[float] = []
    arc_i = 0
    r_i = 0
    cap_i = 0
    pending_r: float | None = None
    for kind, _name in _elements(circuit):
        if kind == "R":
            if r_i == 0:
                guesses.append(max(r0, 1e-3))
            else:
                a = arcs[min(arc_i, len(arcs) - 1)] if arcs else _Arc(1.0, 10.0)
                guesses.append(a.r)
                pending_r = a.r
                arc_i += 1
            r_i += 1
        elif kind in ("CPE", "C"):
            a = arcs[min(cap_i, len(arcs) - 1)] if arcs else _Arc(1.0, 10.0)
            r = pending_r if pending_r is not None else a.r
            alpha = 0.85 if cap_i == 0 else 0.8
            w = 2 * math.pi * a.apex_f
            if kind == "CPE":
                guesses += [1.0 / (r * w**alpha), alpha]
            else:
                guesses.append(1.0 / (r * w))
            cap_i += 1
            pending_r = None
        elif kind in ("Wo", "Ws"):
            rw = max(3.0 * (lf_real - tail_start), 1.0)
            guesses += [rw, 1.0 / (2 * math.pi * max(float(f[-1]), 1e-4))]
        elif kind == "W":
            guesses.append(max(lf_real - tail_start, 1.0))
        elif kind == "L":
            guesses.append(1e-7)
        else:
            raise ValueError(f"no initial guess rule for element {kind!r} in {circuit!r}")
    return guesses


def _bounds(circuit: str, n: int) -> tuple[list[float], list[float]]:
    lo: list[float] = []
    hi: list[float] = []
    for kind, _ in _elements(circuit):
        if kind == "CPE":
            lo += [0.0, 0.3]
            hi += [np.inf, 1.0]
        elif kind in ("Wo", "Ws"):
            lo += [0.0, 0.0]
            hi += [np.inf, np.inf]
        else:
            lo.append(0.0)
            hi.append(np.inf)
    if len(lo) != n:
        raise ValueError(f"circuit {circuit!r}: {n} parameters but bounds for {len(lo)}")
    return lo, hi


def _alternatives(circuit: str, p0: list[float]) -> list[list[float]]:
    """A few more starting points: the Warburg time constant and the CPE exponents vary."""
    starts = [p0]
    pos = 0
    idx_tau: list[int] = []
    for kind, _ in _elements(circuit):
        width = {"CPE": 2, "Wo": 2, "Ws": 2}.get(kind, 1)
        if kind in ("Wo", "Ws"):
            idx_tau.append(pos + 1)
        pos += width
    for factor in (0.01, 0.1, 10.0):
        if idx_tau:
            alt = list(p0)
            for k in idx_tau:
                alt[k] *= factor
            starts.append(alt)
    return starts


def _fit_points(
    spectrum: Spectrum, f_min_Hz: float | None, f_max_Hz: float | None
) -> tuple[FloatArr, ComplexArr]:
    """The finite points of ``spectrum`` inside the fitted range, highest frequency first."""
    f = np.asarray(spectrum.frequency_Hz, dtype=float)
    z = np.asarray(spectrum.z, dtype=complex)
    keep = np.isfinite(f) & np.isfinite(z.real) & np.isfinite(z.imag) & (f > 0)
    if f_min_Hz is not None:
        keep &= f >= f_min_Hz
    if f_max_Hz is not None:
        keep &= f <= f_max_Hz
    f, z = f[keep], z[keep]
    order = np.argsort(-f)
    return f[order], z[order]


def _param_names(circuit: str) -> tuple[list[str], list[str]]:
    """The circuit's parameter names and units (ValueError: not a circuit)."""
    from impedance.models.circuits import CustomCircuit
    from impedance.models.circuits.fitting import calculateCircuitLength

    try:
        probe = CustomCircuit(circuit, initial_guess=[1.0] * calculateCircuitLength(circuit))
        names, units = (list(x) for x in probe.get_param_names())
    except (ValueError, TypeError, AssertionError, KeyError) as exc:
        raise ValueError(f"invalid circuit {circuit!r}: {exc}") from None
    return names, units


def _best_fit(
    circuit: str, f: FloatArr, z: ComplexArr, starts: list[list[float]],
    bounds: tuple[list[float], list[float]], good_rms_pct: float,
) -> tuple[tuple[float, Any] | None, str]:  # fmt: skip
    """The fitted model of least relative RMS residual over ``starts`` (stopping at the
    first under ``good_rms_pct``), or None and the last fitting error."""
    from impedance.models.circuits import CustomCircuit

    best: tuple[float, Any] | None = None
    last_error = ""
    absz = np.abs(z)
    for start in starts:
        model = CustomCircuit(circuit, initial_guess=list(start))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(f, z, bounds=bounds, weight_by_modulus=True, maxfev=20000)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:
            last_error = str(exc)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zf = model.predict(f)
        rms = float(np.sqrt(np.mean((np.abs(zf - z) / absz) ** 2)))
        if np.isfinite(rms) and (best is None or rms < best[0]):
            best = (rms, model)
        if best is not None and best[0] < good_rms_pct / 100.0:
            break  # good enough: the other starts only matter for a poor first fit
    return best, last_error


def fit_spectrum(
    spectrum: Spectrum,
    circuit: str = DEFAULT_CIRCUIT,
    initial_guess: list[float] | None = None,
    *,
    f_min_Hz: float | None = None,
    f_max_Hz: float | None = None,
    good_rms_pct: float = 1.0,
) -> EisFit:
    """Fit ``circuit`` to ``spectrum`` and return values with one-σ uncertainties.

    Never raises on a bad spectrum: a failed fit comes back with ``ok=False`` and a
    message. ``f_min_Hz``/``f_max_Hz`` restrict the fitted range. Further starting points
    are tried only while the relative RMS residual stays above ``good_rms_pct``.
    """
    f, z = _fit_points(spectrum, f_min_Hz, f_max_Hz)
    names, units = _param_names(circuit)
    n = len(names)
    empty = np.full(n, np.nan)

    def failed(msg: str, p0: FloatArr = empty) -> EisFit:
        return EisFit(spectrum.name, spectrum.cycle, circuit, names, units, empty.copy(),
                      empty.copy(), p0, float("nan"), False, msg, f, z,
                      np.full(f.shape, np.nan, dtype=complex))  # fmt: skip

    if f.size < n + 2:
        return failed(f"only {f.size} points for {n} parameters")
    try:
        p0 = initial_guess if initial_guess is not None else guess_parameters(circuit, f, z)
    except (ValueError, IndexError) as exc:
        return failed(f"no initial guess: {exc}")
    if len(p0) != n:
        return failed(f"{len(p0)} initial values for {n} parameters")
    lo, hi = _bounds(circuit, n)
    p0 = [min(max(v, lo_ * 1.0001 + 1e-12), hi_ * 0.9999 if np.isfinite(hi_) else v)
          for v, lo_, hi_ in zip(p0, lo, hi, strict=True)]  # fmt: skip
    starts = [p0] if initial_guess is not None else _alternatives(circuit, p0)
    best, last_error = _best_fit(circuit, f, z, starts, (lo, hi), good_rms_pct)
    if best is None:
        return failed(f"fit did not converge: {last_error}", np.asarray(p0, dtype=float))
    rms, model = best
    conf = model.conf_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zf = np.asarray(model.predict(f), dtype=complex)
    return EisFit(
        name=spectrum.name,
        cycle=spectrum.cycle,
        circuit=circuit,
        param_names=names,
        param_units=units,
        values=np.asarray(model.parameters_, dtype=float),
        stderr=np.asarray(conf, dtype=float) if conf is not None else np.full(n, np.nan),
        initial=np.asarray(p0, dtype=float),
        rel_rms_pct=100.0 * rms,
        ok=True,
        message="",
        frequency_Hz=f,
        z_data=z,
        z_fit=zf,
    )


def resistance_track(fits: list[EisFit]) -> pd.DataFrame:
    """Fitted resistances (and their σ) across checkpoints: one row per spectrum."""
    rows: list[dict[str, Any]] = []
    for fit in fits:
        row: dict[str, Any] = {"spectrum": fit.name, "cycle": fit.cycle, "ok": fit.ok,
                               "rel_rms_pct": fit.rel_rms_pct}  # fmt: skip
        total = 0.0
        for name, unit, v, s in zip(fit.param_names, fit.param_units, fit.values, fit.stderr,
                                    strict=True):  # fmt: skip
            if unit == "Ohm":
                row[f"{name}_ohm"] = float(v)
                row[f"{name}_stderr_ohm"] = float(s)
                # a finite Warburg adds R_w/3 to the DC resistance (open) or R_w (short)
                total += float(v) / 3.0 if name.startswith("Wo") else float(v)
        row["R_total_ohm"] = total if fit.ok else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
