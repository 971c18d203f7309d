"""Synthetic run directories with known answers, written through the real RunStore.

The cell is deliberately simple so every figure the analysis reads off has a closed form:

- open-circuit voltage from a known Q(V) = Σ A_k / (1 + exp(-(V - V_k)/w_k)), so dQ/dV has
  peaks at V_k (shifted by ±I·R under current);
- V = OCV + I·R_ohm + I·R_pol·(1 - exp(-t/τ_pol)) within a current step, relaxing as
  exp(-t/τ_pol) in a rest;
- capacities per cycle are set directly: discharge Q_d(n) = Q0 · fade(n) · rate factor,
  charge Q_c(n) = Q_d(n) / CE(n).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.orchestrator.store import RunStore

FloatArr = npt.NDArray[np.float64]


@dataclass
class SynthCell:
    cam_mass_mg: float = 8.4
    basis_mA_g: float = 200.0
    q0_mAh_g: float = 200.0
    ce_first: float = 0.85
    ce_later: float = 0.998
    r_ohm: float = 60.0
    r_pol: float = 40.0
    tau_pol_s: float = 200.0
    peaks_V: tuple[float, ...] = (3.05, 3.30, 3.55)
    peak_w_V: tuple[float, ...] = (0.03, 0.025, 0.03)
    peak_share: tuple[float, ...] = (0.3, 0.45, 0.25)
    v_low: float = 2.6
    v_high: float = 3.8
    noise_V: float = 2e-4
    noise_I_rel: float = 3e-4
    fade: Callable[[int], float] = field(default=lambda n: 1.0 - 1e-4 * (n - 1))
    rate_factor: Callable[[float], float] = field(default=lambda r: 1.0 - 0.08 * math.log10(r / 0.1)
                                                  if r > 0.1 else 1.0)  # fmt: skip

    @property
    def one_c_A(self) -> float:
        return self.cam_mass_mg * 1e-3 * self.basis_mA_g * 1e-3

    @property
    def cam_g(self) -> float:
        return self.cam_mass_mg * 1e-3

    def _q_of_v(self, v: FloatArr) -> FloatArr:
        q = np.zeros_like(v)
        for vk, wk, ak in zip(self.peaks_V, self.peak_w_V, self.peak_share, strict=True):
            q += ak / (1.0 + np.exp(-(v - vk) / wk))
        return q

    def ocv(self, x: FloatArr) -> FloatArr:
        """OCV at state of charge x in [0, 1] (inverse of the normalised Q(V))."""
        grid = np.linspace(self.v_low, self.v_high, 4001)
        q = self._q_of_v(grid)
        q = (q - q[0]) / (q[-1] - q[0])
        return np.interp(x, q, grid)

    def discharge_mAh(self, n: int, rate: float) -> float:
        return self.q0_mAh_g * self.cam_mass_mg * 1e-3 * self.fade(n) * self.rate_factor(rate)

    def ce(self, n: int) -> float:
        return self.ce_first if n == 1 else self.ce_later


@dataclass
class Written:
    root: Path
    cell: SynthCell
    rates: list[float]
    charge_mAh: list[float]
    discharge_mAh: list[float]
    relaxed_after_charge_V: list[float] = field(default_factory=list)
    loaded_after_charge_V: list[float] = field(default_factory=list)


def _meta(cell: SynthCell, **extra: Any) -> dict[str, Any]:
    return {
        "protocol": {"name": "synthetic", "version": "1", "source": "test"},
        "cell": {
            "cell_id": extra.pop("cell_id", "synth-1"),
            "cam_mass_mg": cell.cam_mass_mg,
            "c_rate_basis_mA_per_g": cell.basis_mA_g,
            **({"sample_id": extra.pop("sample_id")} if "sample_id" in extra else {}),
        },
        "station": "synthetic",
        "simulated": True,
        **extra,
    }


def write_cycling_run(
    out_dir: Path,
    rates: Sequence[float],
    *,
    cell: SynthCell | None = None,
    every_s: float = 10.0,
    rest_s: float = 600.0,
    seed: int = 0,
    run_id: str = "synth-run",
    finish: bool = True,
    eis_cycles: Sequence[int] = (),
    eis_r2: Callable[[int], float] = lambda n: 60.0 * (1 + 0.02 * math.sqrt(n)),
    chunk_rows: int = 250_000,
    meta_extra: dict[str, Any] | None = None,
    blocks: Sequence[str] | None = None,
) -> Written:
    """Cycles at ``rates`` (one C-rate per cycle; charge and discharge at the same rate);
    ``blocks`` gives each cycle's loop label in the stored cycle table."""
    cell = cell or SynthCell()
    rng = np.random.default_rng(seed)
    store = RunStore.create(out_dir, run_id, protocol_yaml="name: synthetic\n",
                            meta=_meta(cell, **(meta_extra or {})), chunk_rows=chunk_rows,
                            durable=False)  # fmt: skip
    t0 = 0.0
    seq = 0
    res = Written(store.root, cell, list(rates), [], [])
    for n, rate in enumerate(rates, start=1):
        i_abs = rate * cell.one_c_A
        qd = cell.discharge_mAh(n, rate) * 1e-3
        qc = qd / cell.ce(n)
        parts: list[dict[str, Any]] = []
        cyc_row: dict[str, Any] = {"cycle": n, "charge_c_rate": rate, "discharge_c_rate": rate}
        if blocks is not None:
            cyc_row["block"] = blocks[n - 1]
        ch_wh = dis_wh = 0.0
        for step_no, kind, dur, current in (
            (1, "charge", qc / i_abs * 3600.0, i_abs),
            (2, "rest", rest_s, 0.0),
            (3, "discharge", qd / i_abs * 3600.0, -i_abs),
            (4, "rest", rest_s, 0.0),
        ):
            if dur <= 0:
                continue
            nrec = max(math.ceil(dur / every_s), 1)
            tt = np.minimum(np.arange(1, nrec + 1) * every_s, dur)
            if kind == "charge":
                x = tt * i_abs / 3600.0 / qc
                pol = 1.0 - np.exp(-tt / cell.tau_pol_s)
                v = cell.ocv(x) + i_abs * cell.r_ohm + i_abs * cell.r_pol * pol
                chq = tt * i_abs / 3600.0
                dchq = np.zeros_like(tt)
                ch_wh = float(np.sum(np.diff(np.concatenate(([0.0], chq))) * v))
                last_pol = float(pol[-1])
                res.loaded_after_charge_V.append(float(v[-1]))
            elif kind == "discharge":
                x = 1.0 - tt * i_abs / 3600.0 / qd
                pol = 1.0 - np.exp(-tt / cell.tau_pol_s)
                v = cell.ocv(x) - i_abs * cell.r_ohm - i_abs * cell.r_pol * pol
                chq = np.full_like(tt, qc)
                dchq = tt * i_abs / 3600.0
                dis_wh = float(np.sum(np.diff(np.concatenate(([0.0], dchq))) * v))
                last_pol = float(pol[-1])
            else:
                after_charge = step_no == 2
                x_end = 1.0 if after_charge else 0.0
                prev_i = i_abs if after_charge else -i_abs
                v = cell.ocv(np.full_like(tt, x_end)) + prev_i * cell.r_pol * last_pol * np.exp(
                    -tt / cell.tau_pol_s
                )
                chq = np.full_like(tt, qc)
                dchq = np.zeros_like(tt) if after_charge else np.full_like(tt, qd)
                if after_charge:
                    res.relaxed_after_charge_V.append(float(v[-1]))
            cur = np.full_like(tt, current)
            cur = cur * (1 + cell.noise_I_rel * rng.standard_normal(tt.size)) if current else cur
            parts.append({
                "time_s": t0 + tt,
                "cycle": np.full(tt.size, n, dtype=np.int32),
                "step": np.full(tt.size, step_no, dtype=np.int32),
                "step_type": np.full(tt.size, kind, dtype=object),
                "current_A": cur,
                "voltage_V": v + cell.noise_V * rng.standard_normal(tt.size),
                "charge_capacity_Ah": chq,
                "discharge_capacity_Ah": dchq,
                "temperature_C": 25.0 + 0.05 * rng.standard_normal(tt.size),
                "record_seq": np.arange(seq, seq + tt.size, dtype=np.int64),
            })  # fmt: skip
            seq += tt.size
            t0 += float(tt[-1])
        for p in parts:
            store.append_records(p)
        res.charge_mAh.append(qc * 1e3)
        res.discharge_mAh.append(qd * 1e3)
        cyc_row.update({
            "charge_capacity_mAh": qc * 1e3, "discharge_capacity_mAh": qd * 1e3,
            "charge_capacity_mAh_g": qc * 1e3 / cell.cam_g,
            "discharge_capacity_mAh_g": qd * 1e3 / cell.cam_g,
            "coulombic_efficiency_pct": 100 * qd / qc, "mean_discharge_voltage_V": dis_wh / qd,
            "discharge_energy_mWh": dis_wh * 1e3, "charge_energy_mWh": ch_wh * 1e3,
            "end_time_s": t0,
        })  # fmt: skip
        store.add_cycle(cyc_row)
        if n in eis_cycles:
            f, z = synthetic_spectrum(r2=eis_r2(n), seed=seed + n)
            store.write_eis(n, f, z.real, z.imag, meta={"dc_voltage_V": 3.1})
    if finish:
        from labrig.orchestrator.events import RunState

        store.finish(RunState.finished)
    else:
        store.flush_records()
    store.close()
    return res


def synthetic_spectrum(
    r0: float = 25.0,
    r1: float = 12.0,
    r2: float = 60.0,
    wo: tuple[float, float] = (150.0, 400.0),
    noise: float = 0.003,
    seed: int = 0,
    f_max: float = 7e6,
    f_min: float = 0.05,
) -> tuple[FloatArr, npt.NDArray[np.complex128]]:
    """R0-p(R1,CPE1)-p(R2,CPE2)-Wo1 at 10 points per decade, with relative noise."""
    f = np.logspace(math.log10(f_max), math.log10(f_min),
                    round(10 * math.log10(f_max / f_min)) + 1)  # fmt: skip
    w = 2 * np.pi * f
    jw = 1j * w

    def rq(r: float, q: float, a: float) -> npt.NDArray[np.complex128]:
        return np.asarray(r / (1 + r * q * jw**a), dtype=np.complex128)

    x = np.sqrt(jw * wo[1])
    z = r0 + rq(r1, 2e-7, 0.85) + rq(r2, 2e-5, 0.8) + wo[0] / (x * np.tanh(x))
    rng = np.random.default_rng(seed)
    z = z + np.abs(z) * noise * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))
    return f, np.asarray(z, dtype=np.complex128)


def slab_surface(t: FloatArr, d: float, length: float, terms: int = 200) -> FloatArr:
    """Dimensionless surface concentration rise of a slab under unit flux (no-flux back face).

    c_s(t) · D / (J L) = D t / L² + 1/3 - (2/π²) Σ exp(-n² π² D t / L²) / n² (Crank, 1975).
    """
    t = np.maximum(np.asarray(t, dtype=float), 0.0)
    tau = d * t / length**2
    n = np.arange(1, terms + 1)[:, None]
    series = (np.exp(-(n**2) * np.pi**2 * tau[None, :]) / n**2).sum(axis=0)
    return tau + 1.0 / 3.0 - 2.0 / np.pi**2 * series


def write_gitt_run(
    out_dir: Path,
    *,
    d_cm2_s: float,
    length_cm: float,
    pulse_s: float,
    rest_s: float,
    n_pulses: int = 5,
    current_A: float = 1e-4,
    dE_dc: float = 0.4,
    r_ohm: float = 50.0,
    every_s: float = 1.0,
    run_id: str = "gitt-run",
    area_cm2: float = 0.785,
    molar_mass: float = 97.3,
    molar_volume: float = 20.3,
) -> tuple[Path, dict[str, float]]:
    """GITT on a planar electrode of thickness ``length_cm`` (finite-slab diffusion).

    The voltage is E = E0 + dE/dx · x_surface + I R during a pulse, with the surface
    concentration from :func:`slab_surface`; ``dE_dc`` is dE per unit of mean
    composition change (V per fraction of the total inserted charge of one pulse train).
    Returns the run directory and the geometry (mass chosen so that m V_M/(M S) = L).
    """
    mass_g = length_cm * area_cm2 * molar_mass / molar_volume
    q_total = current_A * pulse_s * n_pulses  # C
    # ΔE per coulomb of uniform composition change
    k = dE_dc / q_total
    store = RunStore.create(out_dir, run_id, protocol_yaml="name: gitt\n", meta={
        "protocol": {"name": "gitt", "version": "1", "source": "test"},
        "cell": {"cell_id": "gitt-1", "cam_mass_mg": mass_g * 1e3, "nominal_capacity_mAh": 1.0},
        "simulated": True}, durable=False)  # fmt: skip
    t = 0.0
    seq = 0
    e_base = 3.0
    d_si = d_cm2_s
    period = pulse_s + rest_s

    def surface(tt: FloatArr) -> FloatArr:
        # superposition of all pulses so far: +J at the start, -J at the end of each pulse
        out = np.zeros_like(tt)
        for p in range(n_pulses):
            s0 = p * period
            s1 = s0 + pulse_s
            on = tt > s0
            out[on] += slab_surface(tt[on] - s0, d_si, length_cm)
            off = tt > s1
            out[off] -= slab_surface(tt[off] - s1, d_si, length_cm)
        # c_s·D/(J L) -> charge-equivalent: uniform rise per pulse is D t/L² -> I τ
        return out * length_cm**2 / d_si * current_A * k

    # a rest to start, then pulses and rests
    seg = [("rest", 600.0, 0.0)]
    for _ in range(n_pulses):
        seg += [("pulse_charge", pulse_s, current_A), ("rest", rest_s, 0.0)]
    t_origin = 600.0
    for step, (kind, dur, cur) in enumerate(seg, start=1):
        nrec = round(dur / every_s)
        tt = t + np.arange(1, nrec + 1) * every_s
        v = e_base + surface(tt - t_origin) + cur * r_ohm
        store.append_records({
            "time_s": tt, "cycle": np.ones(nrec, np.int32), "step": np.full(nrec, step, np.int32),
            "step_type": np.full(nrec, kind, dtype=object), "current_A": np.full(nrec, cur),
            "voltage_V": v, "charge_capacity_Ah": np.zeros(nrec),
            "discharge_capacity_Ah": np.zeros(nrec), "temperature_C": np.full(nrec, 25.0),
            "record_seq": np.arange(seq, seq + nrec, dtype=np.int64)})  # fmt: skip
        seq += nrec
        t = float(tt[-1])
    from labrig.orchestrator.events import RunState

    store.finish(RunState.finished)
    store.close()
    geom = {"molar_volume_cm3_mol": molar_volume, "molar_mass_g_mol": molar_mass,
            "area_cm2": area_cm2, "mass_g": mass_g}  # fmt: skip
    return store.root, geom
