"""Differential capacity dQ/dV per cycle, on voltage bins, smoothed, with its peaks.

The charge passed in each record interval is binned by the interval's mid-point voltage
(``np.bincount`` with weights) and divided by the bin width. Binning on V rather than
differentiating Q(t) keeps noise in V from producing infinite slopes where the voltage
plateaus, and works whether or not V is monotonic record to record. The binned curve is
smoothed with a Savitzky–Golay filter, which keeps peak positions and heights better than
a moving average. Only constant-current steps are used: a CV hold would pile its whole
charge into one bin.

A bin is at least twice the median voltage step between records: a run recorded every
5 mV binned at 5 mV puts one or two records in each bin, and the curve would show that
aliasing as ripples. Peaks are the curve's own maxima that stand out of it (prominence),
rise above the baseline (``min_height`` x the curve's maximum), span a few bins, and lie
away from the step's ends: the steep rise at a cut-off is not a peak of the material.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.signal import find_peaks, savgol_filter

from .loader import KIND_CODES, TimeSeries

__all__ = ["DqdvCurve", "dqdv"]

FloatArr = npt.NDArray[np.float64]


@dataclass
class DqdvCurve:
    """dQ/dV of one cycle in one direction (values positive in both directions)."""

    cycle: int
    direction: str
    voltage_V: FloatArr
    dqdv: FloatArr
    """Smoothed dQ/dV, in mAh/V (or mAh g⁻¹ V⁻¹ when ``per_gram``)."""
    raw: FloatArr
    per_gram: bool
    peaks_V: list[float] = field(default_factory=list)
    peak_heights: list[float] = field(default_factory=list)
    bin_V: float = 0.005

    @property
    def unit(self) -> str:
        return "mAh g⁻¹ V⁻¹" if self.per_gram else "mAh V⁻¹"


def _cycle_index(cyc: npt.NDArray[np.int32], cycle: int) -> npt.NDArray[np.int64] | None:
    """Record indices of ``cycle`` (a contiguous slice when the records are in order)."""
    lo = int(np.searchsorted(cyc, cycle, side="left"))
    hi = int(np.searchsorted(cyc, cycle, side="right"))
    if hi - lo >= 3 and np.all(cyc[lo:hi] == cycle):
        return np.arange(lo, hi)
    sel = np.flatnonzero(cyc == cycle)
    return sel if sel.size >= 3 else None


def _peaks(
    centres: FloatArr, smooth: FloatArr, prominence: float, min_height: float, edge_V: float
) -> tuple[list[float], list[float]]:
    top = float(smooth.max()) if smooth.size else 0.0
    if top <= 0:
        return [], []
    pk, _ = find_peaks(smooth, prominence=prominence * top, height=min_height * top, width=2)
    inside = (centres[pk] > centres[0] + edge_V) & (centres[pk] < centres[-1] - edge_V)
    return [float(centres[k]) for k in pk[inside]], [float(smooth[k]) for k in pk[inside]]


def dqdv(
    ts: TimeSeries,
    cycle: int,
    direction: str = "discharge",
    *,
    bin_V: float = 0.005,
    window_bins: int = 11,
    polyorder: int = 3,
    cam_mass_g: float | None = None,
    prominence: float = 0.05,
    min_height: float = 0.2,
    edge_V: float = 0.025,
) -> DqdvCurve | None:
    """dQ/dV of ``cycle`` in ``direction`` ("charge" or "discharge"); None without data.

    ``bin_V`` is the smallest voltage bin width (see the module docstring);
    ``window_bins``/``polyorder`` set the Savitzky–Golay filter; peaks must stand out by
    ``prominence`` and reach ``min_height`` x the curve maximum, ``edge_V`` from the ends.
    """
    if direction not in ("charge", "discharge"):
        raise ValueError(f"direction must be 'charge' or 'discharge', got {direction!r}")
    if bin_V <= 0:
        raise ValueError(f"bin_V must be > 0, got {bin_V}")
    col = f"{direction}_capacity_Ah"
    if len(ts) == 0 or col not in ts or "voltage_V" not in ts:
        return None
    idx = _cycle_index(ts["cycle"], cycle)
    if idx is None:
        return None
    kind = ts.cols.get("kind")
    code = KIND_CODES[direction]
    mask = kind[idx] == code if kind is not None else np.ones(idx.size, dtype=bool)
    # an interval belongs to the record that ends it; both ends must be in the CC step
    mask[1:] &= mask[:-1]
    mask[0] = False
    q = ts[col][idx]
    v = ts["voltage_V"][idx]
    dq = np.zeros(idx.size)
    dq[1:] = q[1:] - q[:-1]
    vm = np.empty(idx.size)
    vm[0] = v[0]
    vm[1:] = 0.5 * (v[1:] + v[:-1])
    use = mask & (dq > 0) & np.isfinite(vm)
    if np.count_nonzero(use) < 5:
        return None
    vu = vm[use]
    dqu = dq[use] * 1e3  # mAh
    if cam_mass_g:
        dqu = dqu / cam_mass_g
    steps = np.abs(np.diff(v[use]))
    bin_V = max(bin_V, 2.0 * float(np.median(steps))) if steps.size else bin_V
    v0 = np.floor(vu.min() / bin_V) * bin_V
    nbins = int(np.ceil((vu.max() - v0) / bin_V)) + 1
    b = np.clip(((vu - v0) / bin_V).astype(np.int64), 0, nbins - 1)
    raw = np.bincount(b, weights=dqu, minlength=nbins) / bin_V
    centres = v0 + (np.arange(nbins) + 0.5) * bin_V
    w = min(window_bins, nbins if nbins % 2 == 1 else nbins - 1)
    smooth = savgol_filter(raw, w, polyorder, mode="interp") if w > polyorder + 1 else raw.copy()
    np.maximum(smooth, 0.0, out=smooth)
    peaks_V, heights = _peaks(centres, smooth, prominence, min_height, edge_V)
    return DqdvCurve(
        cycle=cycle,
        direction=direction,
        voltage_V=centres,
        dqdv=smooth,
        raw=raw,
        per_gram=bool(cam_mass_g),
        peaks_V=peaks_V,
        peak_heights=heights,
        bin_V=bin_V,
    )
