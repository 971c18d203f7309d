"""Per-cycle figures recomputed from the time series, retention, fade and rate capability.

Conventions (those of the run store): current is positive while charging; the
``charge_capacity_Ah`` and ``discharge_capacity_Ah`` columns count up from zero within
each cycle; a cycle is one charge followed by one discharge, so the Coulomb efficiency
of cycle n is Q_dis(n) / Q_ch(n) (for a cathode built discharged, as NCM is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .loader import CHARGE_CODES, DISCHARGE_CODES, KIND_CODES, RunData, TimeSeries
from .segments import Segments

__all__ = [
    "MIN_FADE_CYCLES",
    "RATE_COLUMNS",
    "FadeFit",
    "cycle_table",
    "default_reference_cycle",
    "fade_rate",
    "is_rate_test",
    "nice_c_rate",
    "rate_table",
    "retention",
    "retention_note",
]

FloatArr = npt.NDArray[np.float64]


def nice_c_rate(c: float) -> float:
    """Round a measured C-rate to two significant digits (0.0998 -> 0.1, 0.249 -> 0.25)."""
    if not np.isfinite(c) or c <= 0:
        return float("nan")
    return float(f"{c:.2g}")


def _cycle_starts(cycle: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    n = cycle.shape[0]
    return (
        np.concatenate(([0], np.flatnonzero(cycle[1:] != cycle[:-1]) + 1)).astype(np.int64)
        if n
        else np.empty(0, np.int64)
    )


def _increments(q: FloatArr, starts: npt.NDArray[np.int64]) -> FloatArr:
    """Per-record increase of a counter that restarts from 0 at each cycle start."""
    dq = np.empty_like(q)
    dq[0] = q[0]
    np.subtract(q[1:], q[:-1], out=dq[1:])
    dq[starts] = q[starts]
    np.maximum(dq, 0.0, out=dq)
    return dq


def cycle_table(
    ts: TimeSeries,
    *,
    cam_mass_g: float | None = None,
    one_c_A: float | None = None,
    segments: Segments | None = None,
    stored: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per cycle, computed from the records.

    Capacities are the maxima of the per-cycle capacity counters (what the cycler
    counted); energies integrate V·dQ with the mid-point voltage of each interval;
    mean voltages are energy / capacity. C-rates come from ``stored`` (the nominal values
    the run recorded) when given, otherwise from the mean current of the cycle's first
    charge and discharge step divided by ``one_c_A``, rounded by :func:`nice_c_rate`.
    """
    if len(ts) == 0:
        return pd.DataFrame(columns=["cycle"])
    starts = _cycle_starts(ts["cycle"])
    if np.any(np.diff(ts["cycle"][starts]) <= 0):
        # cycle numbers not contiguous (a resumed run rewrote one): sort stably by cycle
        order = np.argsort(ts["cycle"], kind="stable")
        ts = TimeSeries({k: v[order] for k, v in ts.cols.items()})
        starts = _cycle_starts(ts["cycle"])
        segments = None
    df = pd.DataFrame(_record_figures(ts, starts, cam_mass_g))
    if segments is not None and len(segments):
        df = _merge_segments(df, segments, one_c_A)
    if stored is not None and "cycle" in stored.columns and len(stored):
        df = _merge_stored(df, stored)
    for c in ("charge_c_rate", "discharge_c_rate"):
        if c not in df.columns:
            df[c] = np.nan
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df.reset_index(drop=True)


def _mid_voltages(ts: TimeSeries, starts: npt.NDArray[np.int64]) -> FloatArr:
    """Each record's interval mid-point voltage (its own at a cycle's first record)."""
    n = len(ts)
    v = ts["voltage_V"] if "voltage_V" in ts else np.full(n, np.nan)
    v_mid = np.empty(n)
    v_mid[0] = v[0]
    np.add(v[1:], v[:-1], out=v_mid[1:])
    v_mid[1:] *= 0.5
    v_mid[starts] = v[starts]
    return v_mid


def _direction_masks(ts: TimeSeries) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Records charging and discharging (CV holds by the sign of their current)."""
    kind = ts.cols.get("kind", np.zeros(len(ts), dtype=np.int8))
    # a 256-entry lookup table is several times faster than np.isin on millions of int8
    lut_ch = np.zeros(256, dtype=bool)
    lut_ch[list(CHARGE_CODES)] = True
    lut_dis = np.zeros(256, dtype=bool)
    lut_dis[list(DISCHARGE_CODES)] = True
    kind_u8 = kind.view(np.uint8)
    is_ch = lut_ch[kind_u8]
    is_dis = lut_dis[kind_u8]
    if "current_A" in ts:
        hold = kind == KIND_CODES["hold"]
        if hold.any():  # most runs have no CV holds: skip three passes over the data
            i = ts["current_A"]
            is_ch |= hold & (i > 0)
            is_dis |= hold & (i < 0)
    return is_ch, is_dis


def _record_figures(
    ts: TimeSeries, starts: npt.NDArray[np.int64], cam_mass_g: float | None
) -> dict[str, Any]:
    """The per-cycle columns computed from the records themselves."""
    n = len(ts)
    t = ts["time_s"]
    counts = np.diff(np.append(starts, n)).astype(np.float64)
    out: dict[str, Any] = {"cycle": ts["cycle"][starts].astype(np.int64)}
    v_mid = _mid_voltages(ts, starts)
    is_ch, is_dis = _direction_masks(ts)
    dt = np.empty(n)
    dt[0] = 0.0
    np.subtract(t[1:], t[:-1], out=dt[1:])
    dt[starts] = 0.0
    for name, col, mask in (
        ("charge", "charge_capacity_Ah", is_ch),
        ("discharge", "discharge_capacity_Ah", is_dis),
    ):
        if col in ts:
            q = ts[col]
            cap = np.maximum.reduceat(q, starts)
            energy = np.add.reduceat(_increments(q, starts) * v_mid, starts)
        else:
            cap = np.full(starts.shape, np.nan)
            energy = cap
        out[f"{name}_capacity_mAh"] = cap * 1e3
        out[f"{name}_energy_mWh"] = energy * 1e3
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"mean_{name}_voltage_V"] = np.where(cap > 0, energy / cap, np.nan)
        out[f"{name}_time_s"] = np.add.reduceat(np.where(mask, dt, 0.0), starts)
    ch = out["charge_capacity_mAh"]
    dis = out["discharge_capacity_mAh"]
    for name in ("charge", "discharge"):
        cap = out[f"{name}_capacity_mAh"]
        out[f"{name}_capacity_mAh_g"] = (
            cap / cam_mass_g if cam_mass_g else np.full(cap.shape, np.nan)
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        out["coulombic_efficiency_pct"] = np.where((ch > 0) & (dis > 0), 100.0 * dis / ch, np.nan)
    out["voltage_hysteresis_V"] = out["mean_charge_voltage_V"] - out["mean_discharge_voltage_V"]
    out["start_time_s"] = t[starts]
    out["end_time_s"] = t[np.append(starts[1:], n) - 1]
    if "temperature_C" in ts:
        out["mean_temperature_C"] = np.add.reduceat(ts["temperature_C"], starts) / counts
    out["records"] = counts.astype(np.int64)
    out["complete"] = (ch > 0) & (dis > 0)
    return out


def _merge_segments(df: pd.DataFrame, segments: Segments, one_c_A: float | None) -> pd.DataFrame:
    """End voltages and (with ``one_c_A``) C-rates from the (small) segment table."""
    sdf = pd.DataFrame(
        {
            "cycle": segments.cycle,
            "kind": segments.kind,
            "v_last": segments.v_last,
            "i_abs": np.abs(segments.i_mean),
        }
    )
    for name, codes in (("charge", CHARGE_CODES), ("discharge", DISCHARGE_CODES)):
        part = sdf[sdf["kind"].isin(codes)]
        g = part.groupby("cycle", sort=True)
        df = df.merge(
            g["v_last"].last().rename(f"end_of_{name}_voltage_V"),
            left_on="cycle", right_index=True, how="left",
        )  # fmt: skip
        if one_c_A:
            rate = (g["i_abs"].first() / one_c_A).map(nice_c_rate)
            df = df.merge(
                rate.rename(f"{name}_c_rate"), left_on="cycle", right_index=True, how="left"
            )
    return df


def _merge_stored(df: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The nominal C-rates and block names the run recorded, over the measured ones."""
    keep = [c for c in ("charge_c_rate", "discharge_c_rate", "block") if c in stored.columns]
    if not keep:
        return df
    st = stored[["cycle", *keep]].drop_duplicates("cycle", keep="last").set_index("cycle")
    for c in keep:
        vals = df["cycle"].map(st[c])
        df[c] = vals.where(vals.notna(), df[c]) if c in df.columns else vals
    return df


#: Retention and a loss per cycle need at least this many cycles at one C-rate when the
#: run has several rates (a rate test's 3-5-cycle blocks give neither).
MIN_FADE_CYCLES = 10


def _complete(cycles: pd.DataFrame) -> pd.DataFrame:
    return cycles[cycles.get("complete", pd.Series(True, index=cycles.index)).astype(bool)]


def _rate_counts(cycles: pd.DataFrame) -> pd.Series:
    """Complete cycles per discharge C-rate (rounded), most common first."""
    comp = _complete(cycles)
    rates = comp.get("discharge_c_rate", None)
    if rates is None or not rates.notna().any():
        return pd.Series(dtype="int64")
    return rates.round(6).value_counts(sort=True)


def default_reference_cycle(cycles: pd.DataFrame, min_cycles: int = MIN_FADE_CYCLES) -> int | None:
    """The cycle retention is referred to by default.

    The first complete cycle at the run's most common discharge C-rate (the ageing rate:
    formation and check-up cycles at other rates are not the baseline); the first complete
    cycle when no C-rates are known or the run has one rate. None when the run has several
    rates and none of them has ``min_cycles`` cycles (a rate test: retention and fade across
    its blocks would compare different rates; see :func:`retention_note`).
    """
    comp = _complete(cycles)
    if comp.empty:
        return None
    counts = _rate_counts(cycles)
    if counts.empty:
        return int(comp["cycle"].iloc[0])
    if len(counts) > 1 and int(counts.iloc[0]) < min_cycles:
        return None
    first = comp[comp["discharge_c_rate"].round(6) == counts.index[0]]
    return int(first["cycle"].iloc[0]) if not first.empty else int(comp["cycle"].iloc[0])


def retention_note(cycles: pd.DataFrame, min_cycles: int = MIN_FADE_CYCLES) -> str | None:
    """Why there is no default reference cycle, in a scientist's words (None if there is)."""
    if default_reference_cycle(cycles, min_cycles) is not None or _complete(cycles).empty:
        return None
    counts = _rate_counts(cycles)
    return (
        f"not computed: a rate test ({len(counts)} C-rates, at most {int(counts.iloc[0])} "
        f"cycles at one; {min_cycles} needed), see the rate table"
    )


def _same_rate(cycles: pd.DataFrame, ref: int) -> pd.Series:
    """Cycles at the reference cycle's discharge C-rate (all cycles if rates are unknown)."""
    if "discharge_c_rate" not in cycles:
        return pd.Series(True, index=cycles.index)
    ref_rate = cycles.loc[cycles["cycle"] == ref, "discharge_c_rate"]
    if ref_rate.empty or not np.isfinite(ref_rate.iloc[0]):
        return pd.Series(True, index=cycles.index)
    rate = float(ref_rate.iloc[0])
    return pd.Series(np.isclose(cycles["discharge_c_rate"], rate, rtol=0.02), index=cycles.index)


def retention(
    cycles: pd.DataFrame,
    reference_cycle: int | None = None,
    column: str = "discharge_capacity_mAh",
    same_rate: bool = True,
) -> pd.Series:
    """Capacity retention in % of ``reference_cycle`` (default: :func:`default_reference_cycle`).

    With ``same_rate`` only cycles at the reference cycle's discharge C-rate get a value
    (NaN elsewhere): a 0.1C check-up is not "115 % retention" of a 1C reference.
    """
    ref = reference_cycle if reference_cycle is not None else default_reference_cycle(cycles)
    if ref is None or column not in cycles:
        return pd.Series(np.nan, index=cycles.index, name="retention_pct")
    row = cycles.loc[cycles["cycle"] == ref, column]
    if row.empty or not np.isfinite(row.iloc[0]) or row.iloc[0] <= 0:
        return pd.Series(np.nan, index=cycles.index, name="retention_pct")
    out = (100.0 * cycles[column] / float(row.iloc[0])).rename("retention_pct")
    return out.where(_same_rate(cycles, ref)) if same_rate else out


@dataclass(frozen=True)
class FadeFit:
    """Linear fit of retention vs cycle number over a span of cycles."""

    first_cycle: int
    last_cycle: int
    n_cycles: int
    loss_pct_per_cycle: float
    """Fitted loss in percentage points of the reference capacity per cycle (> 0 = fading)."""
    stderr_pct_per_cycle: float
    intercept_pct: float
    c_rate: float | None


def fade_rate(
    cycles: pd.DataFrame,
    reference_cycle: int | None = None,
    span: tuple[int, int] | None = None,
    same_rate: bool = True,
) -> FadeFit | None:
    """Capacity loss per cycle (%/cycle) from a least-squares line through retention.

    ``span`` (first, last cycle; default from the reference cycle to the end) limits the
    fit; with ``same_rate`` only cycles at the reference cycle's discharge C-rate count,
    so check-up cycles at another rate do not bend the line.
    """
    ref = reference_cycle if reference_cycle is not None else default_reference_cycle(cycles)
    if ref is None:
        return None
    ret = retention(cycles, ref, same_rate=False)
    ok = ret.notna() & cycles["complete"].astype(bool)
    lo, hi = span if span is not None else (ref, int(cycles["cycle"].max()))
    ok &= (cycles["cycle"] >= lo) & (cycles["cycle"] <= hi)
    rate: float | None = None
    if same_rate:
        ok &= _same_rate(cycles, ref)
        if "discharge_c_rate" in cycles:
            ref_rate = cycles.loc[cycles["cycle"] == ref, "discharge_c_rate"]
            if not ref_rate.empty and np.isfinite(ref_rate.iloc[0]):
                rate = float(ref_rate.iloc[0])
    x = cycles.loc[ok, "cycle"].to_numpy(dtype=float)
    y = ret[ok].to_numpy(dtype=float)
    if x.size < 3:
        return None
    a = np.vstack([x, np.ones_like(x)]).T
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ coef
    dof = max(x.size - 2, 1)
    s2 = float(resid @ resid) / dof
    sxx = float(((x - x.mean()) ** 2).sum())
    stderr = float(np.sqrt(s2 / sxx)) if sxx > 0 else float("nan")
    return FadeFit(
        first_cycle=int(x[0]),
        last_cycle=int(x[-1]),
        n_cycles=int(x.size),
        loss_pct_per_cycle=float(-coef[0]),
        stderr_pct_per_cycle=stderr,
        intercept_pct=float(coef[1]),
        c_rate=rate,
    )


def _label(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _blocks(comp: pd.DataFrame, rtol: float) -> npt.NDArray[np.int64]:
    """Block number per cycle: a new block where the C-rate or the loop label changes."""
    rates = comp["discharge_c_rate"].to_numpy(dtype=float)
    new = np.ones(rates.shape, dtype=bool)
    new[1:] = ~np.isclose(rates[1:], rates[:-1], rtol=rtol)
    if "block" in comp:
        labels = np.array([_label(x) for x in comp["block"]], dtype=object)
        new[1:] |= labels[1:] != labels[:-1]
    return np.cumsum(new).astype(np.int64)


def _block_row(block: int, part: pd.DataFrame, first_cycle: int) -> dict[str, Any]:
    # the run's first cycle (formation: the interphase forms) is left out of a block's mean
    used = part[part["cycle"] != first_cycle] if len(part) > 1 else part
    label = _label(part["block"].iloc[0]) if "block" in part else ""
    return {
        "block": block,
        "label": label,
        "c_rate": float(part["discharge_c_rate"].iloc[0]),
        "first_cycle": int(part["cycle"].min()),
        "last_cycle": int(part["cycle"].max()),
        "n_cycles": len(part),
        "cycles_averaged": len(used),
        "discharge_capacity_mAh": float(used["discharge_capacity_mAh"].mean()),
        "discharge_capacity_std_mAh": float(used["discharge_capacity_mAh"].std(ddof=1)),
        "discharge_capacity_mAh_g": float(used["discharge_capacity_mAh_g"].mean()),
        "formation": "formation" in label.lower(),
    }


RATE_COLUMNS = ["block", "label", "c_rate", "first_cycle", "last_cycle", "n_cycles",
                "cycles_averaged", "discharge_capacity_mAh", "discharge_capacity_std_mAh",
                "discharge_capacity_mAh_g", "formation", "normalised_pct"]  # fmt: skip


def rate_table(
    cycles: pd.DataFrame, rtol: float = 0.02, normalise_to: float | None = None
) -> pd.DataFrame:
    """Rate capability: one row per block of consecutive cycles at the same discharge C-rate
    (and loop label, when the run stored one).

    ``discharge_capacity_*`` is the block's mean, without the run's first cycle when the
    block has others. ``normalised_pct`` is that mean in % of the base block's: the first
    block at ``normalise_to`` (a C-rate) or, by default, at the slowest rate, never a block
    labelled formation (``formation`` column) unless there is nothing else.
    """
    comp = _complete(cycles) if "complete" in cycles else cycles
    comp = comp[comp["discharge_c_rate"].notna()] if "discharge_c_rate" in comp else comp.iloc[0:0]
    if comp.empty:
        return pd.DataFrame(columns=RATE_COLUMNS)
    block = _blocks(comp, rtol)
    first_cycle = int(comp["cycle"].min())
    res = pd.DataFrame(
        [_block_row(b, comp[block == b], first_cycle) for b in range(1, int(block.max()) + 1)]
    )
    base_rows = res[~res["formation"]] if (~res["formation"]).any() else res
    if normalise_to is not None:
        at = base_rows[np.isclose(base_rows["c_rate"], normalise_to, rtol=rtol)]
        if at.empty:
            raise ValueError(f"no block at {normalise_to:g}C to normalise to")
        base_rows = at
    else:
        base_rows = base_rows[base_rows["c_rate"] == base_rows["c_rate"].min()]
    base = float(base_rows["discharge_capacity_mAh"].iloc[0])
    res["normalised_pct"] = 100.0 * res["discharge_capacity_mAh"] / base if base > 0 else np.nan
    return res[RATE_COLUMNS]


def is_rate_test(rates: pd.DataFrame) -> bool:
    """Whether the blocks are a rate-capability test: three or more C-rates, each run in
    about one block (an endurance run with check-ups alternates two rates in many)."""
    if rates.empty:
        return False
    body = rates[~rates["formation"].astype(bool)] if "formation" in rates else rates
    distinct = body["c_rate"].round(6).nunique()
    return bool(distinct >= 3 and len(body) <= distinct + 2)


def run_cycle_table(run: RunData, segments: Segments | None = None) -> pd.DataFrame:
    """:func:`cycle_table` for a loaded run, with the run's mass, 1C and stored table."""
    return cycle_table(
        run.series,
        cam_mass_g=run.cam_mass_g,
        one_c_A=run.one_c_A,
        segments=segments,
        stored=run.stored_cycles,
    )
