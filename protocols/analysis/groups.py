"""Replicate cells: per-cycle mean and standard deviation of a group of runs.

The lab (and the papers it follows) reports three cells per sample as mean ± standard
deviation. :func:`group_cycles` gives that per cycle number, over the runs of a group that
have a complete cycle of that number; :func:`group_summary` gives it for the headline
figures. The standard deviation is the sample one (ddof = 1); a group of one run has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .cycling import retention
from .summary import RunAnalysis

__all__ = ["draw_group_means", "group_cycles", "group_summary"]


def _values(a: RunAnalysis, column: str) -> pd.DataFrame:
    c = a.cycles
    if c.empty or (column not in c.columns and column != "retention_pct"):
        return pd.DataFrame(columns=["cycle", "value"])
    comp = c[c["complete"].astype(bool)] if "complete" in c else c
    if column == "retention_pct":
        ret = c["retention_pct"] if "retention_pct" in c else retention(c, a.reference_cycle)
        vals = ret.loc[comp.index]
    else:
        vals = comp[column]
    return pd.DataFrame({"cycle": comp["cycle"].to_numpy(), "value": vals.to_numpy(float)})


def group_cycles(
    analyses: Sequence[RunAnalysis], groups: Sequence[str], column: str
) -> pd.DataFrame:
    """One row per (group, cycle): ``n`` runs, ``mean`` and ``std`` of ``column`` (a
    per-cycle column such as ``discharge_capacity_mAh_g``, or ``retention_pct``)."""
    parts = []
    for a, g in zip(analyses, groups, strict=True):
        v = _values(a, column)
        if len(v):
            parts.append(v.assign(group=g, run=a.run.run_id))
    if not parts:
        return pd.DataFrame(columns=["group", "cycle", "n", "mean", "std"])
    long = pd.concat(parts, ignore_index=True)
    long = long[np.isfinite(long["value"].to_numpy(float))]
    g = long.groupby(["group", "cycle"], sort=True)["value"]
    out = pd.DataFrame({"n": g.count(), "mean": g.mean(), "std": g.std(ddof=1)}).reset_index()
    return out


def group_summary(analyses: Sequence[RunAnalysis], groups: Sequence[str]) -> pd.DataFrame:
    """Headline figures per group as mean and standard deviation over its runs."""
    keys = ("first_discharge_capacity", "initial_ce_pct", "retention_last_pct",
            "loss_pct_per_cycle")  # fmt: skip
    rows = []
    for a, g in zip(analyses, groups, strict=True):
        k = a.key_numbers()
        rows.append({"group": g, **{key: k.get(key) for key in keys}})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    num = df.set_index("group").apply(pd.to_numeric, errors="coerce")
    grouped = num.groupby(level=0, sort=False)
    out: dict[str, Any] = {"cells": grouped.size()}
    for key in keys:
        out[f"{key}_mean"] = grouped[key].mean()
        out[f"{key}_std"] = grouped[key].std(ddof=1)
    return pd.DataFrame(out).reset_index()


def draw_group_means(
    axes: tuple[Any, Any],
    analyses: Sequence[RunAnalysis],
    groups: Sequence[str],
    colors: dict[str, Any],
    column: str,
) -> None:
    """Mean ± standard deviation bands of every group with two or more runs, on the
    capacity (``axes[0]``) and retention (``axes[1]``) panels."""
    counts = pd.Series(list(groups)).value_counts()
    replicated = [g for g in dict.fromkeys(groups) if counts.get(g, 0) >= 2]
    if not replicated:
        return
    for ax, col in zip(axes, (column, "retention_pct"), strict=True):
        stats = group_cycles(analyses, groups, col)
        for g in replicated:
            s = stats[stats["group"] == g]
            if s.empty:
                continue
            x = s["cycle"].to_numpy(float)
            m = s["mean"].to_numpy(float)
            sd = np.nan_to_num(s["std"].to_numpy(float))
            n = int(counts[g])
            ax.fill_between(x, m - sd, m + sd, color=colors[g], alpha=0.22, lw=0)
            ax.plot(x, m, color=colors[g], lw=2.2, label=f"{g} — mean ± s.d. of {n} cells")
