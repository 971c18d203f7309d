"""Every number of the simulated cell, in one frozen dataclass.

All quantities are SI (V, A, s, Ah, Ω, F) except where a field name says otherwise
(``_mAh_g``, ``_g``, ``_C``, ``_eV``). Resistances are the values at ``t_ref_C`` for a
fresh cell; :mod:`simulators.cell.model` applies temperature (Arrhenius), formation and
ageing on top. The defaults describe an NCM85 | Li6PS5Cl | In-InLi pellet cell and are
literature-typical, not measurements of any particular cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = ["CellParams"]


@dataclass(frozen=True, slots=True)
class CellParams:
    """Parameters of the equivalent-circuit cell.

    Circuit (one reading, used by both the time domain and the impedance)::

        R_bulk + (R_gb ‖ CPE_gb) + (R_ct ‖ CPE_dl) + (R1 ‖ C1) + (R2 ‖ C2)
               + finite Warburg (solid diffusion) + intercalation capacitance (the OCV)

    In the time domain the bulk, grain-boundary and charge-transfer elements (time
    constants of µs–ms) settle within any sampling interval a cycler uses, so they act
    as one instantaneous series resistance; R1/C1 (``tau1_s``) and R2/C2 (``tau2_s``) are
    the slower polarisations, and the diffusion lag moves the surface state of charge
    away from the bulk with time constant ``tau_diff_s``.
    """

    name: str = "ncm85_ininli"
    description: str = "NCM85 | Li6PS5Cl | In-InLi pellet cell (literature-typical defaults)"

    # --- capacity and electrodes -------------------------------------------------------
    cam_mass_g: float = 8.4e-3
    """Cathode active material mass (12 mg composite at 70 wt%)."""
    specific_capacity_mAh_g: float = 205.0
    """Lithium that SOC 0 -> 1 moves, per gram of CAM (the OCV curve's full width)."""
    anode_potential_V: float = 0.62
    """Anode potential vs Li+/Li: In/InLi 0.62 V (flat), Li4Ti5O12 1.55 V."""
    ocv_offset_V: float = 0.0
    """Extra shift of the cathode curve (cell-to-cell spread)."""
    initial_soc: float = 0.0
    """Bulk SOC of the cathode as built (pristine NCM is fully lithiated: 0)."""

    # --- side reactions (charge conserved: this part of the current does not lithiate) ---
    formation_capacity_mAh_g: float = 35.0
    """Charge the interphase formation consumes during the first charge(s)."""
    formation_fraction: float = 0.25
    """Fraction of a charging current that feeds formation while it is incomplete."""
    side_fraction: float = 0.002
    """Fraction of charging current lost to side reactions afterwards (sets CE)."""

    # --- resistances at t_ref_C, fresh cell ----------------------------------------------
    r_bulk_ohm: float = 20.0
    """Solid electrolyte bulk: the high-frequency intercept."""
    r_gb_ohm: float = 8.0
    """Grain boundaries of the electrolyte."""
    cpe_gb_Q: float = 2e-7
    cpe_gb_alpha: float = 0.85
    r_ct_ohm: float = 40.0
    """CAM|SE charge transfer of the fresh cell (before formation and ageing): the
    small-signal resistance of a symmetric Butler-Volmer overpotential
    eta = 2kT/e asinh(I R_ct e / 2kT), so large currents meet proportionally less of it."""
    cpe_dl_Q: float = 2e-5
    cpe_dl_alpha: float = 0.8
    r_ct_formation_gain: float = 1.0
    """R_ct grows by this factor x formation progress (0..1) during the first charge."""
    r1_ohm: float = 15.0
    tau1_s: float = 5.0
    r2_ohm: float = 15.0
    tau2_s: float = 300.0
    tau_diff_s: float = 400.0
    """Time constant with which the surface SOC relaxes to the bulk SOC."""
    diff_gain: float = 0.2
    """Steady surface-bulk SOC offset = diff_gain x tau_diff_s x (SOC rate)."""

    # --- temperature ---------------------------------------------------------------------
    t_ref_C: float = 25.0
    ea_electrolyte_eV: float = 0.35
    """Activation energy of R_bulk and R_gb."""
    ea_interface_eV: float = 0.5
    """Activation energy of R_ct, R1, R2."""
    ea_diffusion_eV: float = 0.4
    """Activation energy of solid diffusion (scales tau_diff_s)."""

    # --- ageing: Q/Q0 = 1 - a sqrt(n) - b n - c sqrt(days); R x (1 + g sqrt(n)) ------------
    fade_sqrt: float = 0.004
    fade_linear: float = 8e-5
    fade_calendar_sqrt_day: float = 5e-4
    r_growth_sqrt: float = 0.02
    """Growth of R_ct, R1 and R2 with sqrt(equivalent full cycles)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"CellParams.{f.name} must be finite, got {v!r}")
        positive = (
            "cam_mass_g",
            "specific_capacity_mAh_g",
            "r_bulk_ohm",
            "r_gb_ohm",
            "r_ct_ohm",
            "r1_ohm",
            "r2_ohm",
            "tau1_s",
            "tau2_s",
            "tau_diff_s",
            "cpe_gb_Q",
            "cpe_dl_Q",
        )
        for n in positive:
            if getattr(self, n) <= 0:
                raise ValueError(f"CellParams.{n} must be > 0, got {getattr(self, n)!r}")
        for n in ("formation_fraction", "side_fraction"):
            if not 0.0 <= getattr(self, n) < 1.0:
                raise ValueError(f"CellParams.{n} must be in [0, 1), got {getattr(self, n)!r}")
        for n in ("cpe_gb_alpha", "cpe_dl_alpha"):
            if not 0.0 < getattr(self, n) <= 1.0:
                raise ValueError(f"CellParams.{n} must be in (0, 1], got {getattr(self, n)!r}")

    @property
    def capacity_Ah(self) -> float:
        """Fresh full-width capacity (SOC 0 -> 1) in Ah."""
        return self.specific_capacity_mAh_g * self.cam_mass_g * 1e-3

    def c_rate_A(self, c_rate: float, specific_mA_g: float = 200.0) -> float:
        """Current in A for ``c_rate`` with 1C = ``specific_mA_g`` mA per g of CAM."""
        return c_rate * specific_mA_g * 1e-3 * self.cam_mass_g
