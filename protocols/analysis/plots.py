"""Panels of the run report, each drawn on a given matplotlib Axes.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly (no
pyplot): no global state, no GUI backend, safe in worker threads and tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .loader import CHARGE_CODES, DISCHARGE_CODES, KIND_CODES, TimeSeries
from .summary import RunAnalysis

__all__ = [
    "PANELS",
    "cycle_axis",
    "draw_capacity",
    "draw_dqdv",
    "draw_gitt",
    "draw_nyquist",
    "draw_profiles",
    "draw_rate",
    "draw_relaxation",
    "draw_retention",
    "new_figure",
]

STYLE: Any = {  # matplotlib rc settings (typed Any: rc keys are Literal in the stubs)
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.2,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def new_figure(width_in: float, height_in: float) -> Figure:
    """A Figure on the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(width_in, height_in), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _cmap(n: int) -> list[Any]:
    from matplotlib import colormaps

    cm: Colormap = colormaps["viridis"]
    return [cm(x) for x in np.linspace(0.0, 0.9, max(n, 1))]


def _no_data(ax: Axes, title: str, why: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.4",
            wrap=True)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def cycle_axis(ax: Axes) -> None:
    """Label the x axis "Cycle" with whole-number ticks (no cycle 2.5)."""
    ax.set_xlabel("Cycle")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _thin(n: int, max_points: int = 1500) -> slice:
    return slice(None, None, max(1, n // max_points))


def _cycle_slice(ts: TimeSeries, cycle: int) -> npt.NDArray[np.int64]:
    cyc = ts["cycle"]
    lo = int(np.searchsorted(cyc, cycle, side="left"))
    hi = int(np.searchsorted(cyc, cycle, side="right"))
    if hi > lo and cyc[lo] == cycle and cyc[hi - 1] == cycle:
        return np.arange(lo, hi)
    return np.flatnonzero(cyc == cycle)


def _cap_unit(a: RunAnalysis) -> tuple[float, str]:
    m = a.run.cam_mass_g
    return (1e3 / m, "mAh g⁻¹") if m else (1e3, "mAh")


def draw_profiles(ax: Axes, a: RunAnalysis) -> None:
    """Voltage vs capacity for the chosen cycles (charge and discharge)."""
    title = "Voltage profiles"
    ts = a.run.series
    if not a.profile_cycles or "voltage_V" not in ts:
        _no_data(ax, title, "no complete cycle")
        return
    scale, unit = _cap_unit(a)
    hold = KIND_CODES["hold"]
    for cycle, color in zip(a.profile_cycles, _cmap(len(a.profile_cycles)), strict=True):
        idx = _cycle_slice(ts, cycle)
        kind = ts.kind[idx]
        for codes, col, label in (
            (CHARGE_CODES, "charge_capacity_Ah", f"cycle {cycle}"),
            (DISCHARGE_CODES, "discharge_capacity_Ah", None),
        ):
            sel = idx[np.isin(kind, (*codes, hold))]
            if col not in ts or sel.size == 0:
                continue
            if codes == CHARGE_CODES:
                sel = sel[ts["current_A"][sel] >= 0] if "current_A" in ts else sel
            else:
                sel = sel[ts["current_A"][sel] <= 0] if "current_A" in ts else sel
            th = _thin(sel.size)
            ax.plot(ts[col][sel][th] * scale, ts["voltage_V"][sel][th], color=color, label=label)
    ax.set_xlabel(f"Capacity / {unit}")
    ax.set_ylabel("Voltage / V")
    ax.set_title(title)
    ax.legend(loc="best", ncols=2 if len(a.profile_cycles) > 4 else 1)


def draw_capacity(ax: Axes, a: RunAnalysis) -> None:
    """Charge and discharge capacity vs cycle with the Coulomb efficiency on a twin axis."""
    title = "Capacity and Coulomb efficiency"
    c = a.cycles
    if c.empty:
        _no_data(ax, title, "no cycles")
        return
    per_g = a.run.cam_mass_g is not None
    unit, suffix = ("mAh g⁻¹", "mAh_g") if per_g else ("mAh", "mAh")
    ms = 3 if len(c) < 200 else 1.5
    ax.plot(c["cycle"], c[f"charge_capacity_{suffix}"], "o", ms=ms, mfc="none",
            color="tab:red", label="charge")  # fmt: skip
    ax.plot(c["cycle"], c[f"discharge_capacity_{suffix}"], "o", ms=ms, color="tab:blue",
            label="discharge")  # fmt: skip
    cycle_axis(ax)
    ax.set_ylabel(f"Capacity / {unit}")
    ax.set_title(title)
    ce_ax = ax.twinx()
    ce_ax.plot(c["cycle"], c["coulombic_efficiency_pct"], "s", ms=ms * 0.8, color="0.35",
               label="CE")  # fmt: skip
    ce_ax.set_ylabel("Coulomb efficiency / %")
    ce_ax.grid(False)
    ce = c["coulombic_efficiency_pct"].dropna()
    if len(ce):
        # every cycle on the axis, the first (80-88 % for these cells) included
        lo = float(min(ce.min(), 99.0))
        ce_ax.set_ylim(max(lo - 0.04 * (101.0 - lo) - 0.5, 0.0), 101.0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ce_ax.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left")


def draw_retention(ax: Axes, a: RunAnalysis) -> None:
    """Retention vs cycle against the reference cycle, with the fitted loss per cycle."""
    title = "Capacity retention"
    c = a.cycles
    if c.empty or "retention_pct" not in c or c["retention_pct"].isna().all():
        _no_data(ax, title, a.retention_note or "no reference cycle")
        return
    c = c[c["retention_pct"].notna()]
    rate = c["discharge_c_rate"].iloc[0] if "discharge_c_rate" in c else float("nan")
    at = f" at {rate:g}C" if np.isfinite(rate) else ""
    ax.plot(c["cycle"], c["retention_pct"], ".", ms=3, color="tab:blue",
            label=f"vs cycle {a.reference_cycle}{at}")  # fmt: skip
    if a.fade is not None:
        x = np.array([a.fade.first_cycle, a.fade.last_cycle], dtype=float)
        y = a.fade.intercept_pct - a.fade.loss_pct_per_cycle * x
        ax.plot(x, y, "-", color="tab:orange",
                label=f"fit: {a.fade.loss_pct_per_cycle:.4f} %/cycle")  # fmt: skip
    cycle_axis(ax)
    ax.set_ylabel("Retention / %")
    ax.set_title(title)
    ax.legend(loc="lower left")


def draw_rate(ax: Axes, a: RunAnalysis) -> None:
    """Mean discharge capacity per C-rate block, with its normalised value on top."""
    title = "Rate capability"
    r = a.rates
    if r.empty:
        _no_data(ax, title, "no C-rate blocks")
        return
    per_g = a.run.cam_mass_g is not None
    y = r["discharge_capacity_mAh_g"] if per_g else r["discharge_capacity_mAh"]
    err = r["discharge_capacity_std_mAh"].fillna(0.0)
    if per_g and a.run.cam_mass_g:
        err = err / a.run.cam_mass_g
    x = np.arange(len(r))
    bars = ax.bar(x, y, yerr=err, color="tab:blue", alpha=0.8, capsize=2)
    for rect, pct in zip(bars, r["normalised_pct"], strict=True):
        ax.annotate(f"{pct:.0f}%", (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                    ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                    textcoords="offset points")  # fmt: skip
    ax.set_xticks(x, [f"{v:g}C" for v in r["c_rate"]], rotation=45 if len(r) > 8 else 0)
    ax.margins(y=0.12)  # room for the percentages above the bars
    ax.set_xlabel("Discharge rate (blocks in run order)")
    ax.set_ylabel("Discharge capacity / " + ("mAh g⁻¹" if per_g else "mAh"))
    ax.set_title(title)


def draw_dqdv(ax: Axes, a: RunAnalysis) -> None:
    """dQ/dV of the chosen cycles; discharge drawn negative, peaks marked."""
    title = "Differential capacity dQ/dV"
    if not a.dqdv:
        _no_data(ax, title, "no constant-current data")
        return
    cycles = sorted({c.cycle for c in a.dqdv})
    colors = dict(zip(cycles, _cmap(len(cycles)), strict=True))
    for curve in a.dqdv:
        sign = 1.0 if curve.direction == "charge" else -1.0
        label = f"cycle {curve.cycle}" if curve.direction == "charge" else None
        ax.plot(curve.voltage_V, sign * curve.dqdv, color=colors[curve.cycle], label=label)
        if curve.peaks_V:
            ax.plot(curve.peaks_V, sign * np.asarray(curve.peak_heights), "v" if sign > 0 else "^",
                    color=colors[curve.cycle], ms=4)  # fmt: skip
    ax.axhline(0.0, color="0.5", lw=0.6)
    ax.set_xlabel("Voltage / V")
    ax.set_ylabel(f"dQ/dV / {a.dqdv[0].unit}")
    ax.set_title(title + " (charge > 0, discharge < 0)")
    ax.legend(loc="best")


def draw_nyquist(ax: Axes, a: RunAnalysis) -> None:
    """Measured spectra (markers) and fitted circuits (lines)."""
    title = "Impedance (Nyquist)"
    if not a.run.spectra:
        _no_data(ax, title, "no spectra")
        return
    colors = _cmap(len(a.run.spectra))
    fits = {f.name: f for f in a.eis}
    for spec, color in zip(a.run.spectra, colors, strict=True):
        label = f"after cycle {spec.cycle}" if spec.cycle is not None else spec.name
        if spec.name.count("_") > 1:
            label += f" ({spec.name.rsplit('_', 1)[-1]})"
        ax.plot(spec.z_real_ohm, -spec.z_imag_ohm, "o", ms=2.5, mfc="none", color=color,
                label=label)  # fmt: skip
        fit = fits.get(spec.name)
        if fit is not None and fit.ok:
            ax.plot(fit.z_fit.real, -fit.z_fit.imag, "-", color=color, lw=1.0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("Z′ / Ω")
    ax.set_ylabel("−Z″ / Ω")
    ax.set_title(title + " — lines: fit " + (a.eis[0].circuit if a.eis else ""))
    ax.legend(loc="upper left")


def draw_gitt(ax: Axes, a: RunAnalysis) -> None:
    """GITT diffusion coefficient per pulse; flagged pulses hollow."""
    title = "GITT diffusion coefficient"
    g = a.gitt
    if g.empty:
        _no_data(ax, title, "no GITT pulses")
        return
    x = g["Es_V"]
    ok = g["valid"].astype(bool)
    ax.semilogy(x[ok], g.loc[ok, "D_cm2_s"], "o", ms=3.5, color="tab:green", label="valid")
    ax.semilogy(x[~ok], g.loc[~ok, "D_cm2_s"], "o", ms=3.5, mfc="none", color="tab:red",
                label="flagged")  # fmt: skip
    ax.set_xlabel("Relaxed voltage after pulse / V")
    ax.set_ylabel("D / cm² s⁻¹")
    geo = a.gitt_geometry
    note = f" (r = {geo.particle_radius_cm * 1e4:g} µm)" if geo and geo.particle_radius_cm else ""
    ax.set_title(title + note)
    ax.legend(loc="best")


def draw_relaxation(ax: Axes, a: RunAnalysis) -> None:
    """Relaxed voltage at the end of each rest and the overpotential before it."""
    title = "Relaxation: relaxed voltage and overpotential"
    r = a.rests[a.rests["after"] != ""] if not a.rests.empty else a.rests
    if r.empty:
        _no_data(ax, title, "no rests after current steps")
        return
    for after, color in (("charge", "tab:red"), ("discharge", "tab:blue")):
        part = r[r["after"] == after]
        ax.plot(part["cycle"], part["relaxed_voltage_V"], "o", ms=3, color=color,
                label=f"relaxed after {after}")  # fmt: skip
    cycle_axis(ax)
    ax.set_ylabel("Relaxed voltage / V")
    ov = ax.twinx()
    ov.plot(r["cycle"], 1e3 * r["overpotential_V"].abs(), "x", ms=3, color="0.35",
            label="|overpotential|")  # fmt: skip
    ov.set_ylabel("|Overpotential| / mV")
    ov.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ov.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="best")
    ax.set_title(title)


#: name -> (drawer, whether it is always drawn)
PANELS: dict[str, tuple[Any, bool]] = {
    "profiles": (draw_profiles, False),
    "capacity": (draw_capacity, False),
    "retention": (draw_retention, False),
    "rate": (draw_rate, False),
    "dqdv": (draw_dqdv, False),
    "relaxation": (draw_relaxation, False),
    "nyquist": (draw_nyquist, False),
    "gitt": (draw_gitt, False),
}


def panel_present(name: str, a: RunAnalysis) -> bool:
    """Whether a panel has something meaningful to show for this run: a retention with
    two points or more, rate bars of a rate test, two relaxed voltages, ..."""
    c = a.cycles
    if name == "profiles":
        return bool(a.profile_cycles) and "voltage_V" in a.run.series
    if name == "capacity":
        return not c.empty
    if name == "retention":
        return "retention_pct" in c and int(c["retention_pct"].notna().sum()) >= 2
    if name == "rate":
        return a.rate_test
    if name == "dqdv":
        return bool(a.dqdv)
    if name == "relaxation":  # a trend over cycles: rests after current steps in two or more
        r = a.rests
        return not r.empty and r.loc[r["after"] != "", "cycle"].nunique() >= 2
    if name == "nyquist":
        return bool(a.run.spectra)
    if name == "gitt":
        return not a.gitt.empty
    return True
