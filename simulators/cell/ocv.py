"""Open-circuit voltage of a layered Ni-rich cathode against its state of charge.

The curve is an NMC811-like shape written vs Li+/Li; a cell's OCV is that minus the
anode potential (In/InLi 0.62 V, LTO 1.55 V). Vs In/InLi it reads about 2.98 V at 10 %
SOC, 3.23 V at 50 %, 3.57 V at 90 % and 3.73 V at 100 %, with a steep tail at empty.

Beyond SOC 0 and 1 the curve continues as steep straight lines so that an over-charge or
over-discharge always drives the voltage out of any sane window (and trips the limits)
instead of flattening. The curve is tabulated once on a fine grid and read by linear
interpolation, which is fast on arrays and keeps it continuous and strictly monotonic
(root finding on it is then safe).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.interpolate import PchipInterpolator

__all__ = ["CATHODE_OCV_VS_LI", "OcvCurve"]

FloatArray = npt.NDArray[np.float64]

# SOC, V vs Li+/Li (= V vs In/InLi + 0.62).
_SOC = (0.0, 0.01, 0.02, 0.04, 0.07, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80,
        0.90, 0.95, 1.00)  # fmt: skip
_V_ININLI = (2.20, 2.55, 2.72, 2.86, 2.94, 2.98, 3.02, 3.06, 3.12, 3.17, 3.23, 3.30, 3.38,
             3.47, 3.57, 3.64, 3.73)  # fmt: skip
CATHODE_OCV_VS_LI: tuple[tuple[float, float], ...] = tuple(
    (s, v + 0.62) for s, v in zip(_SOC, _V_ININLI, strict=True)
)

# Straight continuation outside [0, 1], in V per unit SOC.
_SLOPE_EMPTY = 30.0
_SLOPE_FULL = 8.0
_LO, _HI, _N = -1.0, 2.0, 30001


class OcvCurve:
    """OCV(SOC) of a cell = cathode curve vs Li - anode potential + offset."""

    def __init__(
        self,
        anode_potential_V: float = 0.62,
        offset_V: float = 0.0,
        table: tuple[tuple[float, float], ...] = CATHODE_OCV_VS_LI,
    ) -> None:
        soc = np.array([p[0] for p in table])
        v = np.array([p[1] for p in table]) - anode_potential_V + offset_V
        if np.any(np.diff(soc) <= 0) or np.any(np.diff(v) <= 0):
            raise ValueError("OCV table must be strictly increasing in SOC and voltage")
        pchip = PchipInterpolator(soc, v)
        dpchip = pchip.derivative()
        grid = np.linspace(_LO, _HI, _N)
        inside = (grid >= soc[0]) & (grid <= soc[-1])
        vals = np.empty_like(grid)
        slopes = np.empty_like(grid)
        vals[inside] = pchip(grid[inside])
        slopes[inside] = dpchip(grid[inside])
        lo, hi = grid < soc[0], grid > soc[-1]
        vals[lo] = v[0] + _SLOPE_EMPTY * (grid[lo] - soc[0])
        slopes[lo] = _SLOPE_EMPTY
        vals[hi] = v[-1] + _SLOPE_FULL * (grid[hi] - soc[-1])
        slopes[hi] = _SLOPE_FULL
        self._grid = grid
        self._v = vals
        self._dv = slopes
        self._h = float(grid[1] - grid[0])
        self._v_list: list[float] = [float(x) for x in vals]

    def __call__(self, soc: FloatArray) -> FloatArray:
        """OCV at an array of SOC values."""
        out: FloatArray = np.interp(soc, self._grid, self._v)
        return out

    def scalar(self, soc: float) -> float:
        """OCV at one SOC (fast path for root finding)."""
        x = (soc - _LO) / self._h
        if x <= 0.0:
            return self._v_list[0]
        if x >= _N - 1:
            return self._v_list[-1]
        i = int(x)
        f = x - i
        a = self._v_list[i]
        return a + f * (self._v_list[i + 1] - a)

    def slope(self, soc: FloatArray) -> FloatArray:
        """dOCV/dSOC (V per unit SOC) at an array of SOC values."""
        out: FloatArray = np.interp(soc, self._grid, self._dv)
        return out

    def slope_scalar(self, soc: float) -> float:
        """dOCV/dSOC at one SOC."""
        return float(np.interp(soc, self._grid, self._dv))

    def soc_at(self, voltage_V: float) -> float:
        """SOC whose OCV is ``voltage_V`` (inverse of the curve)."""
        if not math.isfinite(voltage_V):
            raise ValueError(f"voltage must be finite, got {voltage_V!r}")
        return float(np.interp(voltage_V, self._v, self._grid))
