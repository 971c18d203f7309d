"""A long MACCOR text export for bench/import.py, in the layout both labrig and cellpy read.

The layout is MacTest's tab-separated "text export" as the University of Birmingham's
exports of LG M50 cells are laid out (cellpy's model "one", whose own test file is such an
export): three lines of test details, then

    Rec#  Cyc#  Step  TestTime  StepTime  Amp-hr  Watt-hr  Amps  Volts  State  ES
    DPt Time  ACImp/Ohms  DCIR/Ohms

with times as ``"  1d 02:18:47.41"``, ``Amps`` unsigned (``State`` C/D/R says the
direction), and ``Amp-hr`` / ``Watt-hr`` counting up from zero within every step.

The test is an ageing test of a 4.85 Ah NMC811 | graphite-SiOx cylindrical cell: a rest,
then ``cycles`` cycles of CC charge at C/2 to 4.2 V, 30 min rest, CC discharge at 1C to
2.5 V, 30 min rest, the cycle counter advancing after each. Capacity fades to about 80 %
over 1000 cycles and the resistance grows; voltages follow an NMC811 | graphite OCV curve
with an I·R drop, relax exponentially in rests and carry noise of a few 0.1 mV. Records
are taken at a fixed interval chosen so the file holds about ``rows`` of them.

Everything is computed as numpy columns and written by Arrow's CSV writer, a block of
cycles at a time: 7 M rows take well under a minute.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

F = npt.NDArray[np.float64]

COLUMNS = ["Rec#", "Cyc#", "Step", "TestTime", "StepTime", "Amp-hr", "Watt-hr", "Amps",
           "Volts", "State", "ES", "DPt Time", "ACImp/Ohms", "DCIR/Ohms"]  # fmt: skip
# NMC811 | graphite-SiOx open-circuit voltage against state of charge
_SOC = np.array([0.0, 0.005, 0.01, 0.03, 0.06, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                 0.95, 1.0])  # fmt: skip
_OCV = np.array([2.55, 2.70, 2.95, 3.28, 3.42, 3.48, 3.57, 3.62, 3.67, 3.74, 3.84, 3.93, 4.02,
                 4.09, 4.145, 4.19])  # fmt: skip
Q0_AH = 4.85
I_CHARGE_A = 0.5 * Q0_AH
I_DISCHARGE_A = 1.0 * Q0_AH
REST_S = 1800.0
REST_EVERY_S = 30.0
SOC_DELIVERED = 0.3
START = dt.datetime(2021, 3, 1, 9, 30, 12)


@dataclass
class Export:
    path: Path
    rows: int
    cycles: int
    charge_Ah: F
    """The charge each cycle's CC charge passed (Ah), as written in its last Amp-hr."""
    discharge_Ah: F


def _capacity(k: F) -> F:
    """Capacity (Ah) in cycle k (0-based): square-root plus linear fade, ~80 % at 1000."""
    return Q0_AH * (1.0 - 0.0032 * np.sqrt(k) - 0.0001 * k)


def _resistance(k: F) -> F:
    return 0.022 * (1.0 + 0.0006 * k)


def _fixed(x: F, decimals: int) -> pa.Array:
    """Non-negative numbers as MacTest writes them: a fixed number of decimals."""
    scaled = pa.array(np.rint(np.abs(x) * 10**decimals).astype(np.int64)).cast(pa.string())
    padded = pc.utf8_lpad(scaled, decimals + 1, "0")
    return pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(padded, 0, -decimals), pc.utf8_slice_codeunits(padded, -decimals),
        ".",
    )  # fmt: skip


def _dhms(t: F) -> pa.Array:
    """Seconds as MacTest's ``"  Nd HH:MM:S.ss"`` (seconds not zero-padded)."""
    cs = np.rint(t * 100.0).astype(np.int64)
    sec = pa.array((cs % 6000) / 100.0).cast(pa.string())
    mins = pc.utf8_lpad(pa.array((cs // 6000) % 60).cast(pa.string()), 2, "0")
    hours = pc.utf8_lpad(pa.array((cs // 360000) % 24).cast(pa.string()), 2, "0")
    days = pa.array(cs // 8640000).cast(pa.string())
    hms = pc.binary_join_element_wise(hours, mins, sec, ":")
    return pc.binary_join_element_wise("  ", days, "d ", hms, "")


def _steps(first: int, n: int, dt_s: float) -> dict[str, F]:
    """The steps of cycles first .. first+n-1, one entry per step (vectorised over cycles):
    duration, record interval, kind (0 charge, 1 rest, 2 discharge, 3 rest), current, the
    state of charge at the step's start and its change per Ah, and the I·R offset."""
    k = np.arange(first, first + n, dtype=np.float64)
    q = _capacity(k)
    r = _resistance(k)
    s_hi = np.full(n, 0.957)  # where the CC charge reaches 4.2 V
    s_lo = np.where(k == 0, SOC_DELIVERED, 0.002)  # the first charge starts as delivered
    q_ch = (s_hi - s_lo) * q
    q_dis = 0.955 * q * (0.9990 - 0.0004 * np.exp(-k / 30.0))
    rest = np.full(n, REST_S)

    def per_step(*cols: F | float) -> F:
        return np.stack([np.broadcast_to(c, (n,)) for c in cols], axis=1).ravel()

    return {
        "dur": per_step(q_ch / I_CHARGE_A * 3600.0, rest, q_dis / I_DISCHARGE_A * 3600.0, rest),
        "every": per_step(dt_s, REST_EVERY_S, dt_s, REST_EVERY_S),
        "cycle": per_step(k, k, k, k),
        "kind": per_step(0.0, 1.0, 2.0, 3.0),
        "amps": per_step(I_CHARGE_A, 0.0, I_DISCHARGE_A, 0.0),
        "soc0": per_step(s_lo, s_hi, s_hi, s_hi - q_dis / q),
        "dsoc": per_step(1.0 / q, 0.0, -1.0 / q, 0.0),
        "ir": per_step(I_CHARGE_A * r, I_CHARGE_A * r, -I_DISCHARGE_A * r, -I_DISCHARGE_A * r),
    }


def _records(steps: dict[str, F], t0: float) -> dict[str, npt.NDArray[np.generic]]:
    """Records of the given steps, starting at test time t0 (s)."""
    dur, every = steps["dur"], steps["every"]
    n_rec = np.floor(dur / every).astype(np.int64) + 1
    starts = t0 + np.concatenate(([0.0], np.cumsum(dur)[:-1]))
    seg = np.repeat(np.arange(dur.size), n_rec)
    j = np.arange(seg.size) - np.repeat(np.cumsum(n_rec) - n_rec, n_rec)
    new = np.append(True, seg[1:] != seg[:-1])
    end = np.append(seg[1:] != seg[:-1], True)
    ts = np.maximum(j * every[seg], 0.02)  # MacTest's first record comes a few ms in
    ts[end] = dur  # and its last at the end condition
    kind = steps["kind"][seg].astype(np.int64)
    amps = steps["amps"][seg]
    q_step = amps * ts / 3600.0
    soc = steps["soc0"][seg] + steps["dsoc"][seg] * q_step
    relax = np.where(kind % 2 == 1, np.exp(-ts / 300.0), 1.0)
    rng = np.random.default_rng(int(t0) + seg.size)
    volts = np.interp(np.clip(soc, 0.0, 1.0), _SOC, _OCV) + steps["ir"][seg] * relax
    volts += rng.normal(0.0, 2e-4, seg.size)
    amps_rec = np.where(amps > 0, amps * (1.0 + rng.normal(0.0, 2e-5, seg.size)), 0.0)
    step_dt = np.diff(ts, prepend=0.0)
    step_dt[new] = ts[new]
    e = np.cumsum(amps * volts * step_dt / 3600.0)
    e_step = e - np.repeat(np.concatenate(([0.0], e[end][:-1])), n_rec)
    es = np.where(new, 0, np.where(end, np.where(kind % 2 == 0, 133, 130), 129))
    return {"cycle": steps["cycle"][seg].astype(np.int64), "step": kind + 2,
            "test_s": starts[seg] + ts, "step_s": ts, "q": q_step, "e": e_step,
            "amps": amps_rec, "volts": volts, "kind": kind, "es": es}  # fmt: skip


def _table(rec: dict[str, npt.NDArray[np.generic]], rec0: int) -> pa.Table:
    n = rec["step"].shape[0]
    stamp = pa.array(np.datetime64(START, "s") + np.floor(rec["test_s"]).astype("timedelta64[s]"))
    state = np.array(["C", "R", "D", "R"])[rec["kind"]]
    zeros = _fixed(np.zeros(1), 5)[0]
    return pa.table({
        "Rec#": np.arange(rec0, rec0 + n), "Cyc#": rec["cycle"], "Step": rec["step"],
        "TestTime": _dhms(rec["test_s"]), "StepTime": _dhms(rec["step_s"]),
        "Amp-hr": _fixed(rec["q"], 5), "Watt-hr": _fixed(rec["e"], 5),
        "Amps": _fixed(rec["amps"], 5), "Volts": _fixed(rec["volts"], 5), "State": state,
        "ES": rec["es"], "DPt Time": pc.strftime(stamp, "%m/%d/%Y %H:%M:%S"),
        "ACImp/Ohms": pa.array([zeros.as_py()] * n), "DCIR/Ohms": pa.array([zeros.as_py()] * n),
    })  # fmt: skip


def write_maccor_export(path: Path, rows: int = 7_000_000, cycles: int = 1000) -> Export:
    """Write the export; returns what was written (with each cycle's capacities)."""
    k = np.arange(cycles, dtype=np.float64)
    q_ch = 0.955 * _capacity(k)
    active_s = float(np.sum(q_ch / I_CHARGE_A + q_ch / I_DISCHARGE_A) * 3600.0)
    rest_rows = cycles * 2 * (REST_S / REST_EVERY_S + 1)
    dt_s = max(0.05, active_s / max(rows - rest_rows - 2 * cycles, cycles))
    head = (f"Today's Date:\t{START + dt.timedelta(days=200):%d %B %Y}\tDate of Test:\t"
            f"{START:%d %B %Y, %I:%M:%S %p}\n"
            "    Filename:\tM50_ageing_25degC_C2-1C_07\tTester Channel:\t7\n"
            "Procedure:\tM50_ageing_C2_1C.000\tDescription:\tageing, CC C/2 charge, 1C "
            "discharge, 25 degC\n" + "\t".join(COLUMNS) + "\n")  # fmt: skip
    path.write_text(head, encoding="latin-1")
    opts = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    ch, dis = np.zeros(cycles), np.zeros(cycles)
    written, t0 = 0, 0.0
    with open(path, "ab") as fh:
        one = np.ones(1)
        rest = {"dur": 600.0 * one, "every": REST_EVERY_S * one, "cycle": 0 * one,
                "kind": one, "amps": 0 * one, "soc0": SOC_DELIVERED * one, "dsoc": 0 * one,
                "ir": 0 * one}  # fmt: skip
        for first in [-1, *range(0, cycles, 50)]:
            steps = rest if first < 0 else _steps(first, min(50, cycles - first), dt_s)
            rec = _records(steps, t0)
            if first < 0:  # the opening rest sits at the SOC the cell arrived at
                rec["step"] = np.ones_like(rec["step"])
            else:
                last = np.append(rec["step"][1:] != rec["step"][:-1], True)
                for kind, acc in ((0, ch), (2, dis)):
                    m = last & (rec["kind"] == kind)
                    acc[rec["cycle"][m]] = np.round(rec["q"][m], 5)
            pacsv.write_csv(_table(rec, written + 1), fh, write_options=opts)
            written += rec["step"].shape[0]
            t0 = float(rec["test_s"][-1]) + 0.02
    return Export(path, written, cycles, ch, dis)
