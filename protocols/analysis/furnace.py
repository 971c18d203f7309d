"""Results of a furnace run (anneal, calcination, regeneration) from its run directory.

A furnace run directory holds ``thermal.parquet`` (one row per record period: time_s,
step, setpoint_C, temperature_C, output_pct, flow_<line>_sccm, flow_setpoint_<line>_sccm),
``summary.json`` and ``protocol.yaml``. ``step`` indexes the protocol's furnace and gas
steps in order, loops expanded (-1 outside any step). From these:

- per ramp and cool: the programmed rate and the rate the sample saw (a straight line
  through the measured temperature between 10 % and 90 % of the step's temperature
  change, so the lag at both ends does not count), and how long it took;
- per dwell: the time within its tolerance of the setpoint and the largest deviation;
- per gas line: the gas used (the integral of the measured flow) and the mean flow;
- the temperature profile against the programme as a figure (:func:`furnace_figure`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from ..models import FurnaceStep, GasStep, Group, Loop, Protocol
from .loader import RunDirError

__all__ = [
    "FurnaceRun",
    "furnace_figure",
    "furnace_results",
    "furnace_rows",
    "furnace_steps",
    "is_furnace_run",
    "load_furnace_run",
    "write_furnace_report",
]

FloatArr = npt.NDArray[np.float64]
SERIES_FILE = "thermal.parquet"


def is_furnace_run(root: Path) -> bool:
    """A furnace run: run.json says ``kind: thermal`` or the directory holds thermal.parquet."""
    try:
        meta = json.loads((root / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    return (isinstance(meta, dict) and meta.get("kind") == "thermal") or (
        root / SERIES_FILE
    ).is_file()


def _flatten(protocol: Protocol) -> list[FurnaceStep | GasStep]:
    out: list[FurnaceStep | GasStep] = []

    def walk(nodes: list[Any]) -> None:
        for n in nodes:
            if isinstance(n, Loop):
                for _ in range(n.repeat or 0):
                    walk(list(n.steps))
            elif isinstance(n, Group):
                walk(list(n.steps))
            elif isinstance(n, FurnaceStep | GasStep):
                out.append(n)

    walk(list(protocol.sequence))
    return out


def _label(step: FurnaceStep | GasStep) -> str:
    if step.label or step.text:
        return str(step.label or step.text)
    if isinstance(step, GasStep):
        return f"Set gas {step.line} to {step.flow_sccm:g} sccm"
    rate = "" if step.rate_K_per_s is None else f" at {step.rate_K_per_s * 60:g} K/min"
    if step.action == "dwell":
        return f"Hold furnace for {(step.duration_s or 0) / 3600:g} h"
    verb = "Ramp" if step.action == "ramp" else "Cool"
    return f"{verb} furnace to {step.target_C:g} °C{rate}"


@dataclass
class FurnaceRun:
    """What :func:`load_furnace_run` read; ``steps`` are the protocol's, loops expanded."""

    root: Path
    meta: dict[str, Any]
    series: dict[str, FloatArr]
    summary: dict[str, Any]
    steps: list[FurnaceStep | GasStep] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.root.name)

    @property
    def gas_lines(self) -> list[str]:
        return [k[5:-5] for k in self.series if k.startswith("flow_") and "setpoint" not in k]


def load_furnace_run(root: Path) -> FurnaceRun:
    """Read a furnace run directory; RunDirError if it holds no thermal.parquet."""
    root = Path(root)
    if not (root / SERIES_FILE).is_file():
        raise RunDirError(f"{root}: no {SERIES_FILE} (not a furnace run, or it never started)")
    table = pq.read_table(root / SERIES_FILE)
    series = {n: table.column(n).to_numpy().astype(np.float64) for n in table.column_names}
    problems: list[str] = []
    meta: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for name, target in (("run.json", meta), ("summary.json", summary)):
        try:
            loaded = json.loads((root / name).read_text(encoding="utf-8"))
            target.update(loaded if isinstance(loaded, dict) else {})
        except (OSError, ValueError):
            problems.append(f"{name} is missing or unreadable")
    steps: list[FurnaceStep | GasStep] = []
    try:
        from ..loader import load_protocol_text

        text = (root / "protocol.yaml").read_text(encoding="utf-8")
        steps = _flatten(load_protocol_text(text, source_name="protocol.yaml"))
    except (OSError, ValueError) as exc:
        problems.append(f"protocol.yaml could not be read ({exc}); steps are unnamed")
    return FurnaceRun(root, meta, series, summary, steps, problems)


def _rate_K_min(t: FloatArr, pv: FloatArr) -> float | None:
    """|Slope| of the temperature between 10 % and 90 % of its change, in K/min."""
    ok = np.isfinite(pv)
    t, pv = t[ok], pv[ok]
    if t.size < 3 or abs(pv[-1] - pv[0]) < 2.0:
        return None
    lo, hi = sorted((pv[0], pv[-1]))
    span = hi - lo
    sel = (pv >= lo + 0.1 * span) & (pv <= hi - 0.1 * span)
    if np.count_nonzero(sel) < 3:
        sel = np.ones(t.size, dtype=bool)
    slope = float(np.polyfit(t[sel], pv[sel], 1)[0])
    return abs(slope) * 60.0


def _gas_L(t: FloatArr, flow: FloatArr) -> float:
    if t.size < 2:
        return 0.0
    f = np.nan_to_num(flow, nan=0.0)
    return float(np.sum((f[1:] + f[:-1]) * np.diff(t)) / 2.0 / 60.0 / 1000.0)


def _step_result(fr: FurnaceRun, i: int, step: FurnaceStep) -> dict[str, Any] | None:
    s = fr.series
    rows = s["step"] == i
    if not rows.any():
        return None
    t, pv, sp = s["time_s"][rows], s["temperature_C"][rows], s["setpoint_C"][rows]
    # each row stands for the time until the next one (the record period)
    dt = np.diff(s["time_s"], append=s["time_s"][-1])[rows]
    if dt.size and dt[-1] == 0 and dt.size > 1:
        dt[-1] = float(np.median(dt[:-1]))
    out: dict[str, Any] = {"step": i, "label": _label(step), "kind": step.action,
                           "start_h": float(t[0]) / 3600.0,
                           "duration_min": float(dt.sum()) / 60.0,
                           "target_C": step.target_C}  # fmt: skip
    if step.action == "dwell":
        target = float(np.nanmedian(sp)) if step.target_C is None else step.target_C
        inside = np.abs(pv - target) <= step.tolerance_K
        out.update(target_C=target, tolerance_K=step.tolerance_K,
                   programmed_min=(step.duration_s or 0.0) / 60.0,
                   within_tolerance_min=float(np.sum(dt[inside])) / 60.0,
                   max_deviation_K=float(np.nanmax(np.abs(pv - target))))  # fmt: skip
        return out
    rate = step.rate_K_per_s
    out["programmed_rate_K_min"] = None if rate is None else rate * 60.0
    out["measured_rate_K_min"] = _rate_K_min(t, pv)
    out["end_temperature_C"] = float(pv[-1]) if np.isfinite(pv[-1]) else None
    if rate is not None and step.target_C is not None:
        out["programmed_min"] = abs(step.target_C - float(pv[0])) / rate / 60.0
    return out


def furnace_steps(fr: FurnaceRun) -> list[dict[str, Any]]:
    """One dict per furnace step that ran (see the module docstring)."""
    out = []
    for i, step in enumerate(fr.steps):
        if isinstance(step, FurnaceStep):
            r = _step_result(fr, i, step)
            if r is not None:
                out.append(r)
    return out


def furnace_results(fr: FurnaceRun) -> dict[str, Any]:
    """Everything :func:`furnace_rows` shows, as plain JSON-able values."""
    s = fr.series
    t, pv = s["time_s"], s["temperature_C"]
    gas = {}
    for line in fr.gas_lines:
        flow = s[f"flow_{line}_sccm"]
        used = _gas_L(t, flow)
        if used > 0:
            on = np.nan_to_num(flow) > 0.5
            gas[line] = {"used_L": used, "mean_flow_sccm": float(np.nanmean(flow[on]))}
    finite = pv[np.isfinite(pv)]
    peak_sp = float(np.nanmax(s["setpoint_C"])) if t.size else None
    return {
        "run_id": fr.run_id,
        "protocol": (fr.meta.get("protocol") or {}).get("name"),
        "state": fr.meta.get("state"),
        "reason": fr.meta.get("reason"),
        "samples": fr.meta.get("samples") or [],
        "duration_h": float(t[-1] - t[0]) / 3600.0 if t.size else 0.0,
        "max_temperature_C": float(finite.max()) if finite.size else None,
        "peak_setpoint_C": peak_sp,
        "overshoot_K": max(0.0, float(finite.max()) - peak_sp)
        if finite.size and peak_sp is not None
        else None,
        "final_temperature_C": float(finite[-1]) if finite.size else None,
        "steps": furnace_steps(fr),
        "gas": gas,
        "problems": list(fr.problems),
    }


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def _step_row(r: dict[str, Any]) -> tuple[str, str]:
    if r["kind"] == "dwell":
        return (f"dwell at {r['target_C']:g} °C",
                f"{r['within_tolerance_min']:.0f} of {r['duration_min']:.0f} min within "
                f"±{r['tolerance_K']:g} K (programmed {r['programmed_min']:.0f} min; "
                f"max deviation {r['max_deviation_K']:.1f} K)")  # fmt: skip
    verb = "ramp" if r["kind"] == "ramp" else "cool"
    prog = r.get("programmed_rate_K_min")
    asked = "natural cooling" if prog is None else f"programmed {prog:g} K/min"
    took = f"{r['duration_min']:.0f} min"
    if r.get("programmed_min") is not None:
        took += f" (programmed {r['programmed_min']:.0f} min)"
    if r["kind"] == "cool" and r.get("end_temperature_C") is not None:
        took += f", ended at {r['end_temperature_C']:.1f} °C"
    return (f"{verb} to {_fmt(r['target_C'], 'g')} °C",
            f"{_fmt(r['measured_rate_K_min'], '.2f')} K/min measured, {asked}; {took}")  # fmt: skip


def furnace_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of :func:`furnace_results` for a table or a report."""
    rows: list[tuple[str, str]] = [
        ("run", str(res["run_id"])),
        ("protocol", str(res.get("protocol") or "–")),
        ("state", str(res.get("state") or "–") + (f" ({res['reason']})" if res.get("reason")
                                                  else "")),
        ("samples", ", ".join(res.get("samples") or []) or "–"),
        ("duration", f"{res['duration_h']:.2f} h"),
        ("max temperature", f"{_fmt(res['max_temperature_C'])} °C "
                            f"(overshoot {_fmt(res['overshoot_K'])} K)"),
        ("final temperature", f"{_fmt(res['final_temperature_C'])} °C"),
    ]  # fmt: skip
    rows += [_step_row(r) for r in res["steps"]]
    for line, g in res["gas"].items():
        rows.append((f"gas {line}", f"{g['used_L']:.2f} L used (mean {g['mean_flow_sccm']:.1f} "
                                    "sccm while on)"))  # fmt: skip
    return rows


def furnace_figure(fr: FurnaceRun) -> Figure:
    """Measured temperature against the programme, dwells with their tolerance band,
    measured ramp rates written on the ramps, and the gas flows below."""
    import matplotlib as mpl

    from .plots import STYLE, new_figure

    s = fr.series
    th = s["time_s"] / 3600.0
    lines = [ln for ln in fr.gas_lines if np.nan_to_num(s[f"flow_{ln}_sccm"]).max() > 0]
    with mpl.rc_context(STYLE):
        fig = new_figure(9.0, 6.0)
        ax, ag = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        ax.plot(th, s["setpoint_C"], "--", color="0.45", lw=1.0, label="programme (setpoint)")
        ax.plot(th, s["temperature_C"], color="tab:red", label="measured")
        for r in furnace_steps(fr):
            rows = s["step"] == r["step"]
            t0, t1 = float(th[rows][0]), float(th[rows][-1])
            if r["kind"] == "dwell":
                lo, hi = r["target_C"] - r["tolerance_K"], r["target_C"] + r["tolerance_K"]
                ax.fill_between([t0, t1], lo, hi, color="tab:green", alpha=0.2, lw=0,
                                label=f"dwell ±{r['tolerance_K']:g} K")  # fmt: skip
            elif r.get("measured_rate_K_min") is not None:
                mid = rows.nonzero()[0][rows.sum() // 2]
                ax.annotate(f"{r['measured_rate_K_min']:.1f} K/min", (th[mid],
                            s["temperature_C"][mid]), xytext=(6, 0), textcoords="offset points",
                            fontsize=7, color="tab:red")  # fmt: skip
        ax.set_ylabel("Temperature / °C")
        ax.set_title(f"Furnace run — {fr.run_id}", fontsize=9)
        ax.legend(loc="upper right")
        for line in lines:
            ag.plot(th, s[f"flow_{line}_sccm"], label=line)
        ag.set_ylabel("Flow / sccm")
        ag.set_xlabel("Time / h")
        if lines:
            top = max(float(np.nanmax(s[f"flow_{ln}_sccm"])) for ln in lines)
            ag.set_ylim(0.0, 1.6 * top)  # the legend sits above the flows
            ag.legend(loc="upper right", ncols=len(lines))
    return fig


def write_furnace_report(fr: FurnaceRun, out: Path, fmt: str) -> Path:
    """The furnace run's figure (png, svg, pdf) or an HTML page with its table and figure."""
    import base64
    import html

    from .report import FIGURE_FORMATS, figure_bytes

    rows = furnace_rows(furnace_results(fr))
    fig = furnace_figure(fr)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt in FIGURE_FORMATS:
        out.write_bytes(figure_bytes(fig, fmt))
        return out
    png = base64.b64encode(figure_bytes(fig, "png")).decode("ascii")
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    out.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(fr.run_id)}</title></head><body style='font-family:sans-serif'>"
        f"<h1>Furnace run — {html.escape(fr.run_id)}</h1><table>{body}</table>"
        f"<img style='width:100%;max-width:1100px' alt='temperature' "
        f"src='data:image/png;base64,{png}'></body></html>",
        encoding="utf-8",
    )
    return out
