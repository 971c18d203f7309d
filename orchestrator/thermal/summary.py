"""Results of a furnace run from its time series (pure).

- per dwell: time within its tolerance of the setpoint, and the fraction of the dwell;
- per ramp (and cool at a rate): the largest tracking error |PV - SP|;
- overshoot: the highest temperature above the programme's peak setpoint;
- per gas line: the gas used, the integral of the measured flow (sccm x min = scc).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.protocols.models import FurnaceStep, GasStep

__all__ = ["gas_used_scc", "summarise", "summary_lines"]

F64 = npt.NDArray[np.float64]


def gas_used_scc(time_s: F64, flow_sccm: F64) -> float:
    """Trapezoidal integral of a flow over time, in standard cubic centimetres."""
    if len(time_s) < 2:
        return 0.0
    f = np.nan_to_num(flow_sccm, nan=0.0)
    return float(np.sum((f[1:] + f[:-1]) * np.diff(time_s)) / 2.0 / 60.0)


def _row_dt(time_s: F64) -> F64:
    # Each row stands for the time until the next one (the last for the median period).
    if len(time_s) == 0:
        return time_s
    if len(time_s) == 1:
        return np.zeros(1)
    d = np.diff(time_s)
    return np.append(d, np.median(d))


def summarise(
    steps: Sequence[FurnaceStep | GasStep],
    labels: Sequence[str],
    cols: Mapping[str, F64],
    gas_lines: Sequence[str],
    peak_C: float,
) -> dict[str, Any]:
    """The summary of a run; ``cols`` holds time_s, step, setpoint_C, temperature_C and
    flow_<line>_sccm arrays of equal length."""
    t = cols["time_s"]
    step = cols["step"]
    sp = cols["setpoint_C"]
    pv = cols["temperature_C"]
    dt = _row_dt(t)
    dwells: list[dict[str, Any]] = []
    ramps: list[dict[str, Any]] = []
    for i, s in enumerate(steps):
        if not isinstance(s, FurnaceStep):
            continue
        rows = step == i
        if not rows.any():
            continue
        if s.action == "dwell":
            target = float(np.nanmedian(sp[rows])) if s.target_C is None else s.target_C
            inside = np.abs(pv[rows] - target) <= s.tolerance_K  # NaN (sensor break): out
            span = float(np.sum(dt[rows]))
            within = float(np.sum(dt[rows][inside]))
            dwells.append(
                {
                    "step": i,
                    "label": labels[i],
                    "target_C": target,
                    "tolerance_K": s.tolerance_K,
                    "duration_s": span,
                    "within_tolerance_s": within,
                    "within_fraction": within / span if span > 0 else 0.0,
                    "max_deviation_K": _nanmax(np.abs(pv[rows] - target)),
                }
            )
        elif s.action == "ramp" or s.rate_K_per_s is not None:
            err = np.abs(pv[rows] - sp[rows])
            ramps.append(
                {
                    "step": i,
                    "label": labels[i],
                    "target_C": s.target_C,
                    "max_tracking_error_K": _nanmax(err),
                    "mean_tracking_error_K": float(np.nanmean(err)) if len(err) else None,
                }
            )
    gas = {
        line: {
            "used_scc": gas_used_scc(t, cols[f"flow_{line}_sccm"]),
            "used_L": gas_used_scc(t, cols[f"flow_{line}_sccm"]) / 1000.0,
        }
        for line in gas_lines
        if f"flow_{line}_sccm" in cols
    }
    max_pv = _nanmax(pv)
    return {
        "rows": len(t),
        "duration_s": float(t[-1] - t[0]) if len(t) else 0.0,
        "peak_setpoint_C": peak_C,
        "max_temperature_C": max_pv,
        "overshoot_K": None if max_pv is None else max(0.0, max_pv - peak_C),
        "final_temperature_C": float(pv[-1]) if len(pv) and np.isfinite(pv[-1]) else None,
        "dwells": dwells,
        "ramps": ramps,
        "gas": gas,
    }


def _nanmax(a: F64) -> float | None:
    if len(a) == 0 or not np.isfinite(a).any():
        return None
    return float(np.nanmax(a))


def summary_lines(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The summary as (name, value) rows for a table or a report."""

    def f(v: Any, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    rows: list[tuple[str, str]] = [
        ("max temperature", f"{f(summary.get('max_temperature_C'), '.1f')} °C"),
        ("overshoot", f"{f(summary.get('overshoot_K'), '.1f')} K"),
    ]
    for d in summary.get("dwells", []):
        rows.append(
            (
                f"dwell {d['target_C']:g} °C",
                f"{d['within_tolerance_s'] / 60:.0f} of {d['duration_s'] / 60:.0f} min"
                f" within ±{d['tolerance_K']:g} K ({100 * d['within_fraction']:.0f} %)",
            )
        )
    for r in summary.get("ramps", []):
        rows.append(
            (
                f"ramp to {f(r['target_C'], 'g')} °C",
                f"max tracking error {f(r['max_tracking_error_K'], '.1f')} K",
            )
        )
    for line, g in summary.get("gas", {}).items():
        rows.append((f"gas {line}", f"{g['used_L']:.2f} L ({g['used_scc']:.0f} scc)"))
    return rows
