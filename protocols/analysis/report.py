"""The run report (one multi-panel PNG, or an HTML page with embedded PNGs) and the
comparison of several runs.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .cycling import retention
from .groups import draw_group_means, group_summary
from .plots import PANELS, STYLE, new_figure, panel_present
from .summary import RunAnalysis

__all__ = [
    "compare_figure",
    "format_key_numbers",
    "group_key",
    "report_figure",
    "write_compare",
    "write_report",
]


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.{digits}g}"
    return str(v)


def format_key_numbers(k: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs of the headline figures, in reading order, for tables."""
    u = k.get("capacity_unit", "mAh")
    rows: list[tuple[str, str]] = [
        ("run", str(k.get("run_id"))),
        ("protocol", _fmt(k.get("protocol"))),
        ("state", _fmt(k.get("state"))),
        ("cell / sample", f"{_fmt(k.get('cell_id'))} / {_fmt(k.get('sample_id'))}"),
        ("CAM mass", f"{_fmt(k.get('cam_mass_mg'))} mg"),
        ("complete cycles", _fmt(k.get("cycles_complete"))),
        ("duration", f"{_fmt(k.get('duration_h'))} h"),
        ("1st charge / discharge",
         f"{_fmt(k.get('first_charge_capacity'))} / {_fmt(k.get('first_discharge_capacity'))} {u}"),
        ("initial CE", f"{_fmt(k.get('initial_ce_pct'))} %"),
        ("mean CE after cycle 1", f"{_fmt(k.get('mean_ce_after_first_pct'))} %"),
        ("reference cycle (capacity)",
         f"{_fmt(k.get('reference_cycle'))} ({_fmt(k.get('reference_capacity'))} {u})"),
        ("retention at cycle " + _fmt(k.get("retention_last_cycle")),
         f"{_fmt(k.get('retention_last_pct'))} %"),
        ("loss per cycle (fit)",
         f"{_fmt(k.get('loss_pct_per_cycle'))} ± "
         f"{_fmt(k.get('loss_stderr_pct_per_cycle'), 2)} %/cycle"),
    ]  # fmt: skip
    rc = k.get("rate_capability")
    if isinstance(rc, dict) and rc:
        rows.append(("rate capability", ", ".join(
            f"{rate}: {_fmt(v.get('capacity'))} ({_fmt(v.get('normalised_pct'), 3)} %)"
            for rate, v in rc.items())))  # fmt: skip
    for after in ("charge", "discharge"):
        rv = k.get(f"relaxed_voltage_after_first_{after}_V")
        if rv is not None:
            ov = k.get(f"overpotential_after_first_{after}_V")
            rows.append(
                (
                    f"relaxed V after 1st {after}",
                    f"{_fmt(rv)} V (overpotential {_fmt(ov * 1e3 if ov else None)} mV)",
                )
            )
    if k.get("dc_resistance_median_ohm") is not None:
        rows.append(("DC resistance (median, onset)", f"{_fmt(k['dc_resistance_median_ohm'])} Ω"))
    for label in ("first", "last"):
        vals = [f"{n} {_fmt(k.get(f'eis_{label}_{n}_ohm'))} Ω" for n in ("R0", "R1", "R2")
                if k.get(f"eis_{label}_{n}_ohm") is not None]  # fmt: skip
        if vals:
            rows.append((f"EIS fit, {label} spectrum", ", ".join(vals)))
    if k.get("gitt_pulses"):
        rows.append(
            (
                "GITT",
                f"{k.get('gitt_valid_pulses')}/{k.get('gitt_pulses')} pulses valid, "
                f"median D {_fmt(k.get('gitt_median_D_cm2_s'))} cm²/s",
            )
        )
    if k.get("max_deviation_from_stored_pct") is not None:
        rows.append(
            (
                "recomputed vs stored capacity",
                f"max {_fmt(k['max_deviation_from_stored_pct'], 2)} % apart",
            )
        )
    return rows


def _panels(a: RunAnalysis) -> list[str]:
    return [name for name, (_, always) in PANELS.items() if always or panel_present(name, a)]


def report_figure(a: RunAnalysis) -> Figure:
    """One multi-panel figure: key numbers on top, then every panel with data."""
    import matplotlib as mpl

    names = _panels(a)
    ncols = 2
    nrows = math.ceil(len(names) / ncols)
    with mpl.rc_context(STYLE):
        fig = new_figure(11.0, 1.6 + 3.4 * nrows)
        sub: Any = fig.subfigures(2, 1, height_ratios=[1.6, 3.4 * nrows])
        head = sub[0].add_subplot()
        head.axis("off")
        rows = format_key_numbers(a.key_numbers())
        half = math.ceil(len(rows) / 2)
        for col, part in enumerate((rows[:half], rows[half:])):
            text = "\n".join(textwrap.shorten(f"{k}: {v}", 95, placeholder=" …") for k, v in part)
            head.text(0.0 + 0.5 * col, 1.0, text, va="top", ha="left", family="monospace",
                      fontsize=7.2, transform=head.transAxes)  # fmt: skip
        sub[0].suptitle(f"labrig run report — {a.run.run_id}", fontsize=11, weight="bold")
        axes = sub[1].subplots(nrows, ncols, squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            PANELS[name][0](ax, a)
        for ax in list(axes.flat)[len(names) :]:
            ax.remove()
    return fig


def _png_bytes(fig: Figure, dpi: int = 150) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _panel_png(a: RunAnalysis, name: str) -> bytes:
    import matplotlib as mpl

    with mpl.rc_context(STYLE):
        fig = new_figure(6.4, 4.2)
        ax = fig.add_subplot()
        PANELS[name][0](ax, a)
        return _png_bytes(fig)


_CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
color:#222} h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ccc;
padding:2px 8px;text-align:right} th{background:#f3f3f3} td:first-child{text-align:left}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px} img{width:100%} .warn{color:#a40}
@media print{.grid{grid-template-columns:1fr 1fr}}
"""


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: _fmt(float(v)), na_rep="–",
                      border=0)  # fmt: skip


def report_html(a: RunAnalysis) -> str:
    """The report as a self-contained HTML page (PNGs embedded as base64)."""
    k = a.key_numbers()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(a.run.run_id)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>labrig run report — {html.escape(a.run.run_id)}</h1>",
             "<h2>Key numbers</h2><table>"]  # fmt: skip
    for label, value in format_key_numbers(k):
        parts.append(f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>")
    parts.append("</table>")
    if a.problems:
        parts.append("<h2>Missing or incomplete</h2><ul class='warn'>")
        parts += [f"<li>{html.escape(p)}</li>" for p in a.problems]
        parts.append("</ul>")
    parts.append("<h2>Figures</h2><div class='grid'>")
    for name in _panels(a):
        data = base64.b64encode(_panel_png(a, name)).decode("ascii")
        parts.append(f"<img alt='{name}' src='data:image/png;base64,{data}'>")
    parts.append("</div>")
    if not a.rates.empty:
        parts += ["<h2>Rate capability</h2>", _table_html(a.rates)]
    ok_fits = [f for f in a.eis if f.ok]
    if ok_fits:
        parts.append("<h2>Impedance fits (value ± one standard deviation)</h2>")
        for fit in ok_fits:
            parts.append(f"<p>{html.escape(fit.name)}: {html.escape(fit.circuit)}, "
                         f"relative RMS residual {fit.rel_rms_pct:.2f} %</p>")  # fmt: skip
            parts.append(_table_html(fit.table()))
        parts += ["<h3>Resistances across checkpoints</h3>", _table_html(a.eis_track)]
    if not a.gitt.empty:
        parts += ["<h2>GITT pulses</h2>", _table_html(a.gitt)]
    cols = [c for c in ("cycle", "charge_c_rate", "discharge_c_rate", "charge_capacity_mAh_g",
                        "discharge_capacity_mAh_g", "charge_capacity_mAh", "discharge_capacity_mAh",
                        "coulombic_efficiency_pct", "retention_pct", "mean_discharge_voltage_V",
                        "discharge_energy_mWh") if c in a.cycles.columns]  # fmt: skip
    if len(a.cycles):
        shown = a.cycles[cols]
        if len(shown) > 60:
            shown = pd.concat([shown.head(30), shown.tail(30)])
            parts.append("<h2>Cycles (first and last 30)</h2>")
        else:
            parts.append("<h2>Cycles</h2>")
        parts.append(_table_html(shown))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(a: RunAnalysis, out: Path, fmt: str | None = None) -> Path:
    """Write the report as ``html`` or ``png`` (default: from the suffix of ``out``)."""
    fmt = (fmt or out.suffix.lstrip(".") or "html").lower()
    if fmt not in ("html", "png"):
        raise ValueError(f"report format must be html or png, got {fmt!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        out.write_bytes(_png_bytes(report_figure(a)))
    else:
        out.write_text(report_html(a), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------- compare

_ANNEAL = re.compile(r"(\d{2,4})\s*(?:°\s*C|degC|C)\b", re.IGNORECASE)


def group_key(a: RunAnalysis, by: str) -> str:
    """The group a run belongs to: ``sample`` (cell.sample_id), ``anneal`` (an anneal
    temperature from run.json ``anneal``/``cell.anneal`` or read from the sample id such as
    "NCM-350C"), or ``label`` (run.json ``label``, else the cell id, else the run id)."""
    meta = a.run.meta
    cell = a.run.cell
    if by == "sample":
        return str(cell.get("sample_id") or "unknown sample")
    if by == "anneal":
        for v in (meta.get("anneal"), cell.get("anneal"), meta.get("anneal_C"),
                  cell.get("anneal_C")):  # fmt: skip
            if v is not None:
                return f"{v} °C" if isinstance(v, int | float) else str(v)
        for text in (cell.get("sample_id"), cell.get("cell_id"), meta.get("label")):
            if isinstance(text, str):
                m = _ANNEAL.search(text)
                if m:
                    return f"{m.group(1)} °C"
        return "no anneal"
    if by == "label":
        return str(meta.get("label") or cell.get("cell_id") or a.run.run_id)
    raise ValueError(f"--by must be anneal, sample or label, got {by!r}")


def compare_figure(analyses: Sequence[RunAnalysis], by: str = "label") -> Figure:
    """Capacity and retention vs cycle of several runs, coloured by group."""
    import matplotlib as mpl

    from .plots import _cmap

    groups = [group_key(a, by) for a in analyses]
    order = list(dict.fromkeys(groups))
    colors = dict(zip(order, _cmap(len(order)), strict=True))
    styles = ["-", "--", ":", "-."]
    with mpl.rc_context(STYLE):
        fig = new_figure(11.0, 4.4)
        ax_c, ax_r = fig.subplots(1, 2)
        seen: dict[str, int] = {}
        per_g = all(a.run.cam_mass_g is not None for a in analyses)
        col = "discharge_capacity_mAh_g" if per_g else "discharge_capacity_mAh"
        for a, g in zip(analyses, groups, strict=True):
            n = seen.get(g, 0)
            seen[g] = n + 1
            c = a.cycles
            if c.empty:
                continue
            label = f"{g} — {a.run.cell.get('cell_id') or a.run.run_id}"
            kw = {"color": colors[g], "ls": styles[n % len(styles)], "marker": "o", "ms": 2}
            ax_c.plot(c["cycle"], c[col], label=label, **kw)
            ret = c["retention_pct"] if "retention_pct" in c else retention(c, a.reference_cycle)
            ax_r.plot(c["cycle"], ret, label=label, **kw)
        draw_group_means((ax_c, ax_r), analyses, groups, colors, col)  # replicates: mean ± s.d.
        ax_c.set_xlabel("Cycle")
        ax_c.set_ylabel("Discharge capacity / " + ("mAh g⁻¹" if per_g else "mAh"))
        ax_c.set_title("Discharge capacity")
        ax_r.set_xlabel("Cycle")
        ax_r.set_ylabel("Retention / %")
        ax_r.set_title("Capacity retention (each vs its reference cycle)")
        for ax in (ax_c, ax_r):
            ax.legend(loc="lower left", title=f"by {by}")
    return fig


def compare_table(analyses: Sequence[RunAnalysis], by: str = "label") -> pd.DataFrame:
    """Key numbers of several runs side by side, with their group."""
    rows = []
    for a in analyses:
        k = a.key_numbers()
        rows.append({
            "group": group_key(a, by), "run": a.run.run_id, "cycles": k.get("cycles_complete"),
            "initial_ce_pct": k.get("initial_ce_pct"),
            "first_discharge": k.get("first_discharge_capacity"),
            "retention_last_pct": k.get("retention_last_pct"),
            "loss_pct_per_cycle": k.get("loss_pct_per_cycle"),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    return df.sort_values(["group", "run"], kind="stable") if len(df) else df


def write_compare(analyses: Sequence[RunAnalysis], out: Path, by: str = "label") -> Path:
    """Write the comparison as PNG or HTML (from the suffix of ``out``)."""
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in ("png", "html"):
        raise ValueError(f"compare output must end in .png or .html, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    png = _png_bytes(compare_figure(analyses, by))
    if fmt == "png":
        out.write_bytes(png)
        return out
    data = base64.b64encode(png).decode("ascii")
    body = [f"<!doctype html><html><head><meta charset='utf-8'><style>{_CSS}</style></head><body>",
            f"<h1>labrig comparison by {html.escape(by)}</h1>",
            f"<img alt='compare' src='data:image/png;base64,{data}'>",
            _table_html(compare_table(analyses, by)), "<h2>Groups (mean and s.d.)</h2>",
            _table_html(group_summary(analyses, [group_key(a, by) for a in analyses])),
            "</body></html>"]  # fmt: skip
    out.write_text("\n".join(body), encoding="utf-8")
    return out


def image_stats(png: bytes) -> tuple[int, int, float]:
    """(width, height, pixel standard deviation) of a PNG: a cheap not-blank check."""
    from matplotlib.image import imread

    img = np.asarray(imread(io.BytesIO(png), format="png"), dtype=float)
    return int(img.shape[1]), int(img.shape[0]), float(img[..., :3].std())
