"""Impedance of the simulated cell, from the same circuit the time domain runs on.

Z(ω) = R_bulk + (R_gb ‖ CPE_gb) + (R_ct ‖ CPE_dl) + (R1 ‖ C1) + (R2 ‖ C2)
       + finite-length (transmissive) Warburg + 1/(jω C_int)

The RC pairs have C = tau / R. The Warburg stands for the same solid diffusion as the
time domain's surface-SOC lag: its DC resistance equals the lag's steady overpotential
per ampere (dOCV/dSOC x gain x tau_diff / Q) and its slowest pole matches tau_diff
(tau_W = π² tau_diff / 4). C_int is the OCV's intercalation capacitance Q / (dOCV/dSOC).
All values follow the cell's temperature, formation and ageing through
:meth:`CellModel.coeffs`, so a fit can be checked against :func:`circuit_elements`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .model import CellModel, CellState

__all__ = ["CircuitElements", "circuit_elements", "impedance"]


@dataclass(frozen=True, slots=True)
class CircuitElements:
    """Element values of the cell's circuit at one state and temperature (Ω, F, s)."""

    r_bulk_ohm: float
    r_gb_ohm: float
    cpe_gb_Q: float
    cpe_gb_alpha: float
    r_ct_ohm: float
    cpe_dl_Q: float
    cpe_dl_alpha: float
    r1_ohm: float
    c1_F: float
    r2_ohm: float
    c2_F: float
    warburg_r_ohm: float
    warburg_tau_s: float
    c_int_F: float


def circuit_elements(model: CellModel, state: CellState, temperature_C: float) -> CircuitElements:
    """The circuit's elements for ``state`` at ``temperature_C``."""
    p = model.params
    co = model.coeffs(state, temperature_C)
    slope = max(model.ocv_curve.slope_scalar(state.soc), 1e-6)  # V per unit SOC
    return CircuitElements(
        r_bulk_ohm=co.r_bulk,
        r_gb_ohm=co.r_gb,
        cpe_gb_Q=p.cpe_gb_Q,
        cpe_gb_alpha=p.cpe_gb_alpha,
        r_ct_ohm=co.r_ct,
        cpe_dl_Q=p.cpe_dl_Q,
        cpe_dl_alpha=p.cpe_dl_alpha,
        r1_ohm=co.r1,
        c1_F=co.tau1 / co.r1,
        r2_ohm=co.r2,
        c2_F=co.tau2 / co.r2,
        warburg_r_ohm=slope * co.gain * co.taud / co.q_C,
        warburg_tau_s=math.pi**2 * co.taud / 4.0,
        c_int_F=co.q_C / slope,
    )


def impedance(
    model: CellModel,
    state: CellState,
    temperature_C: float,
    frequencies_Hz: npt.ArrayLike,
) -> npt.NDArray[np.complex128]:
    """Complex impedance (Ω, Z = Z' + jZ'') at ``frequencies_Hz``."""
    f = np.asarray(frequencies_Hz, dtype=np.float64)
    if f.ndim != 1 or f.size == 0:
        raise ValueError("frequencies must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError("frequencies must be finite and > 0 Hz")
    el = circuit_elements(model, state, temperature_C)
    jw = 1j * 2.0 * np.pi * f

    def r_cpe(r: float, q: float, a: float) -> npt.NDArray[np.complex128]:
        out = np.asarray(r / (1.0 + r * q * jw**a), dtype=np.complex128)
        return out

    x = np.sqrt(jw * el.warburg_tau_s)
    z = (
        el.r_bulk_ohm
        + r_cpe(el.r_gb_ohm, el.cpe_gb_Q, el.cpe_gb_alpha)
        + r_cpe(el.r_ct_ohm, el.cpe_dl_Q, el.cpe_dl_alpha)
        + el.r1_ohm / (1.0 + jw * el.r1_ohm * el.c1_F)
        + el.r2_ohm / (1.0 + jw * el.r2_ohm * el.c2_F)
        + el.warburg_r_ohm * np.tanh(x) / x
        + 1.0 / (jw * el.c_int_F)
    )
    return np.asarray(z, dtype=np.complex128)
