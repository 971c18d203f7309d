"""Everything the lab reads off a run, in one call: :func:`analyze`.

Each part is computed independently and a failure in one part (a spectrum that will not
fit, a GITT without geometry) is recorded in ``problems`` rather than raised, so a
broken or partial run still gives every figure it can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cycling import (
    FadeFit,
    default_reference_cycle,
    fade_rate,
    is_rate_test,
    rate_table,
    retention,
    retention_note,
)
from .cycling import cycle_table as _cycle_table
from .dqdv import DqdvCurve, dqdv
from .eis import DEFAULT_CIRCUIT, EisFit, fit_spectrum, resistance_track
from .gitt import GittGeometry, gitt_analysis
from .loader import PULSE_CODES, RunData, load_run
from .segments import Segments, dc_resistance, rest_relaxation, segment_series

__all__ = ["DEFAULT_PARTICLE_RADIUS_UM", "AnalysisOptions", "RunAnalysis", "analyze",
           "choose_cycles"]  # fmt: skip

#: GITT particle radius assumed when none is given (a typical NCM primary/secondary size).
DEFAULT_PARTICLE_RADIUS_UM = 2.5


@dataclass(frozen=True)
class AnalysisOptions:
    """Choices for :func:`analyze`; the defaults suit the lab's runs."""

    reference_cycle: int | None = None
    fade_span: tuple[int, int] | None = None
    cycles: tuple[int, ...] | None = None
    """Cycles for voltage profiles and dQ/dV (default: :func:`choose_cycles`)."""
    circuit: str = DEFAULT_CIRCUIT
    fit_eis: bool = True
    gitt: GittGeometry | None = None
    """GITT geometry; default: spheres of ``particle_radius_um``."""
    particle_radius_um: float | None = None
    """GITT particle radius; None: :data:`DEFAULT_PARTICLE_RADIUS_UM`, said to be assumed."""
    dqdv_bin_V: float = 0.005
    dcir_after_s: float | None = None
    normalise_to_c_rate: float | None = None
    """Rate table base; None: the slowest rate's first block that is not formation."""


def choose_cycles(cycles: list[int], max_curves: int = 6) -> list[int]:
    """First, second, then about evenly spaced cycles, and the last."""
    if len(cycles) <= max_curves:
        return list(cycles)
    picked = [cycles[0], cycles[1]]
    inner = max_curves - 3
    if inner > 0:
        idx = np.linspace(1, len(cycles) - 1, inner + 2)[1:-1]
        picked += [cycles[round(k)] for k in idx]
    picked.append(cycles[-1])
    return sorted(dict.fromkeys(picked))


@dataclass
class RunAnalysis:
    """The results of :func:`analyze` (tables are pandas DataFrames)."""

    run: RunData
    segments: Segments
    cycles: pd.DataFrame
    reference_cycle: int | None
    fade: FadeFit | None
    rates: pd.DataFrame
    rests: pd.DataFrame
    dcir: pd.DataFrame
    profile_cycles: list[int]
    dqdv: list[DqdvCurve]
    eis: list[EisFit]
    eis_track: pd.DataFrame
    gitt: pd.DataFrame
    gitt_geometry: GittGeometry | None
    problems: list[str] = field(default_factory=list)
    gitt_geometry_note: str = ""
    """Which GITT geometry was used and where it came from (given or assumed)."""
    retention_note: str | None = None
    """Why retention and loss per cycle are not given (a rate test), else None."""

    @property
    def rate_test(self) -> bool:
        """The run's blocks form a rate-capability test (see :func:`is_rate_test`)."""
        return is_rate_test(self.rates)

    def key_numbers(self) -> dict[str, Any]:
        """The headline figures, as plain JSON-able values (None when not available)."""
        return key_numbers(self)


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _head_numbers(a: RunAnalysis, per_g: bool) -> dict[str, Any]:
    run = a.run
    c = a.cycles
    comp = c[c["complete"].astype(bool)] if "complete" in c else c.iloc[0:0]
    unit = "mAh_g" if per_g else "mAh"
    proto = run.meta.get("protocol")
    out: dict[str, Any] = {
        "run_id": run.run_id,
        "protocol": proto.get("name") if isinstance(proto, dict) else proto,
        "state": run.state,
        "cell_id": run.cell.get("cell_id"),
        "sample_id": run.cell.get("sample_id"),
        "cam_mass_mg": run.cam_mass_g * 1e3 if run.cam_mass_g else None,
        "records": len(run.series),
        "duration_h": _f(run.series["time_s"][-1] / 3600.0) if len(run.series) else None,
        "cycles_complete": len(comp),
        "capacity_unit": "mAh/g" if per_g else "mAh",
    }
    if len(c):
        first = c.iloc[0]
        out["first_charge_capacity"] = _f(first[f"charge_capacity_{unit}"])
        out["first_discharge_capacity"] = _f(first[f"discharge_capacity_{unit}"])
        out["initial_ce_pct"] = _f(first["coulombic_efficiency_pct"])
    if len(comp) > 1:
        later = comp.iloc[1:]
        out["mean_ce_after_first_pct"] = _f(later["coulombic_efficiency_pct"].mean())
        out["last_cycle"] = int(comp["cycle"].iloc[-1])
        out["last_discharge_capacity"] = _f(comp[f"discharge_capacity_{unit}"].iloc[-1])
    return out


def _retention_numbers(a: RunAnalysis, per_g: bool) -> dict[str, Any]:
    c = a.cycles
    unit = "mAh_g" if per_g else "mAh"
    out: dict[str, Any] = {"reference_cycle": a.reference_cycle}
    if a.retention_note:
        out["retention_note"] = a.retention_note
    if a.reference_cycle is not None and "retention_pct" in c:
        ref = c.loc[c["cycle"] == a.reference_cycle, f"discharge_capacity_{unit}"]
        out["reference_capacity"] = _f(ref.iloc[0]) if len(ref) else None
        rate = c.loc[c["cycle"] == a.reference_cycle, "discharge_c_rate"]
        out["reference_c_rate"] = _f(rate.iloc[0]) if len(rate) else None
        have = c[c["retention_pct"].notna() & c["complete"].astype(bool)]
        if len(have):
            out["retention_last_pct"] = _f(have["retention_pct"].iloc[-1])
            out["retention_last_cycle"] = int(have["cycle"].iloc[-1])
    if a.fade is not None:
        out["loss_pct_per_cycle"] = a.fade.loss_pct_per_cycle
        out["loss_stderr_pct_per_cycle"] = a.fade.stderr_pct_per_cycle
        out["loss_fit_cycles"] = [a.fade.first_cycle, a.fade.last_cycle]
    if a.rate_test:
        rc: dict[str, Any] = {}
        for r in a.rates[~a.rates["formation"].astype(bool)].itertuples():
            cap = r.discharge_capacity_mAh_g if per_g else r.discharge_capacity_mAh
            rc.setdefault(f"{r.c_rate:g}C", {"capacity": _f(cap),
                                             "normalised_pct": _f(r.normalised_pct)})  # fmt: skip
        out["rate_capability"] = rc
    return out


def _signal_numbers(a: RunAnalysis) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if len(a.rests):
        for after in ("charge", "discharge"):
            part = a.rests[a.rests["after"] == after]
            if len(part):
                out[f"relaxed_voltage_after_first_{after}_V"] = _f(
                    part["relaxed_voltage_V"].iloc[0]
                )
                out[f"overpotential_after_first_{after}_V"] = _f(part["overpotential_V"].iloc[0])
    if len(a.dcir):
        on = a.dcir[a.dcir["transition"] == "onset"]
        if len(on):
            out["dc_resistance_median_ohm"] = _f(on["resistance_ohm"].median())
    fits = [f for f in a.eis if f.ok]
    if fits:
        for label, fit in (("first", fits[0]), ("last", fits[-1])):
            for name in ("R0", "R1", "R2"):
                if name in fit.param_names:
                    out[f"eis_{label}_{name}_ohm"] = _f(fit.param(name))
    if len(a.gitt):
        valid = a.gitt[a.gitt["valid"]]
        out["gitt_pulses"] = len(a.gitt)
        out["gitt_valid_pulses"] = len(valid)
        out["gitt_geometry"] = a.gitt_geometry_note
        if len(valid):
            out["gitt_median_D_cm2_s"] = _f(valid["D_cm2_s"].median())
    return out


def key_numbers(a: RunAnalysis) -> dict[str, Any]:
    per_g = a.run.cam_mass_g is not None
    out = _head_numbers(a, per_g)
    out.update(_retention_numbers(a, per_g))
    out.update(_signal_numbers(a))
    c = a.cycles
    stored = a.run.stored_cycles
    if stored is not None and len(stored) and "discharge_capacity_mAh" in stored and len(c):
        m = c.merge(stored[["cycle", "discharge_capacity_mAh"]], on="cycle", suffixes=("", "_st"))
        ok = m["discharge_capacity_mAh_st"] > 0
        if ok.any():
            dev = m.loc[ok, "discharge_capacity_mAh"] / m.loc[ok, "discharge_capacity_mAh_st"] - 1
            out["max_deviation_from_stored_pct"] = _f(100.0 * dev.abs().max())
    out["problems"] = list(a.problems)
    return out


def _cycling(
    cyc: pd.DataFrame, opts: AnalysisOptions, problems: list[str]
) -> tuple[int | None, FadeFit | None, pd.DataFrame, str | None]:
    """Reference cycle, fade fit, rate table and the retention note; adds retention_pct."""
    if not len(cyc):
        problems.append("no cycles: nothing to tabulate")
        return None, None, rate_table(cyc.iloc[0:0]), None
    try:
        rates = rate_table(cyc, normalise_to=opts.normalise_to_c_rate)
    except ValueError as exc:
        problems.append(f"rate table: {exc}; normalised to the slowest rate instead")
        rates = rate_table(cyc)
    ref = opts.reference_cycle
    if ref is not None and ref not in set(cyc["cycle"].tolist()):
        problems.append(f"reference cycle {ref} is not in the run; using the default")
        ref = None
    note = retention_note(cyc) if ref is None else None
    if ref is None:
        ref = default_reference_cycle(cyc)
    cyc["retention_pct"] = retention(cyc, ref)
    fade = fade_rate(cyc, ref, opts.fade_span)
    if not bool(cyc["complete"].iloc[-1]):
        problems.append(f"the last cycle ({int(cyc['cycle'].iloc[-1])}) is incomplete")
    if cyc["discharge_c_rate"].isna().all():
        problems.append("no C-rates known (no stored cycle table and no 1C in run.json)")
    return ref, fade, rates, note


def _gitt(
    run: RunData, seg: Segments, opts: AnalysisOptions, problems: list[str]
) -> tuple[pd.DataFrame, GittGeometry | None, str]:
    if not (len(seg) and bool(np.isin(seg.kind, PULSE_CODES).any())):
        return pd.DataFrame(), None, ""
    if opts.gitt is not None:
        geom, note = opts.gitt, "given: " + opts.gitt.describe()
    elif opts.particle_radius_um is not None:
        geom = GittGeometry(particle_radius_cm=opts.particle_radius_um * 1e-4)
        note = f"given: {geom.describe()}"
    else:
        geom = GittGeometry(particle_radius_cm=DEFAULT_PARTICLE_RADIUS_UM * 1e-4)
        note = f"assumed: {geom.describe()} (no radius given; set --particle-radius-um)"
    geom = geom.with_mass(run.cam_mass_g)
    try:
        return gitt_analysis(run.series, geom, segments=seg), geom, note
    except ValueError as exc:
        problems.append(f"GITT not evaluated: {exc}")
        return pd.DataFrame(), geom, note


def _profiles(
    run: RunData, cyc: pd.DataFrame, opts: AnalysisOptions, problems: list[str]
) -> tuple[list[int], list[DqdvCurve]]:
    complete = cyc.loc[cyc["complete"].astype(bool), "cycle"].tolist() if len(cyc) else []
    if opts.cycles:
        prof = [c for c in opts.cycles if c in set(cyc["cycle"].tolist())]
        missing = sorted(set(opts.cycles) - set(prof))
        if missing:
            problems.append(f"cycles not in the run: {', '.join(map(str, missing))}")
    else:
        prof = choose_cycles([int(x) for x in complete])
    curves: list[DqdvCurve] = []
    for cy in prof:
        for direction in ("charge", "discharge"):
            curve = dqdv(run.series, cy, direction, bin_V=opts.dqdv_bin_V,
                         cam_mass_g=run.cam_mass_g)  # fmt: skip
            if curve is not None:
                curves.append(curve)
    return prof, curves


def analyze(run: RunData | str | Path, options: AnalysisOptions | None = None) -> RunAnalysis:
    """Load (if given a path) and analyse a run; never raises on a broken run directory."""
    opts = options or AnalysisOptions()
    if not isinstance(run, RunData):
        run = load_run(run)
    problems = list(run.problems)
    seg = segment_series(run.series)
    cyc = _cycle_table(
        run.series,
        cam_mass_g=run.cam_mass_g,
        one_c_A=run.one_c_A,
        segments=seg,
        stored=run.stored_cycles,
    )
    ref, fade, rates, note = _cycling(cyc, opts, problems)
    prof, curves = _profiles(run, cyc, opts, problems)
    fits: list[EisFit] = []
    if opts.fit_eis:
        for spec in run.spectra:
            fit = fit_spectrum(spec, opts.circuit)
            if not fit.ok:
                problems.append(f"EIS fit of {spec.name} failed: {fit.message}")
            fits.append(fit)
    gitt, geom, geom_note = _gitt(run, seg, opts, problems)
    if not run.spectra:
        problems.append("no impedance spectra (eis/ empty or missing)")
    return RunAnalysis(
        run=run,
        segments=seg,
        cycles=cyc,
        reference_cycle=ref,
        fade=fade,
        rates=rates,
        rests=rest_relaxation(seg),
        dcir=dc_resistance(run.series, seg, after_s=opts.dcir_after_s),
        profile_cycles=prof,
        dqdv=curves,
        eis=fits,
        eis_track=resistance_track(fits),
        gitt=gitt,
        gitt_geometry=geom,
        problems=problems,
        gitt_geometry_note=geom_note,
        retention_note=note,
    )
