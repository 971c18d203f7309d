"""Ground truth from the simulated cell: runs through the executor on the simulated station,
and spectra from the simulator's own impedance function."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labrig.protocols.analysis import analyze, fit_spectrum, write_report
from labrig.protocols.analysis.loader import Spectrum
from labrig.protocols.analysis.report import image_stats
from tests.helpers import run_virtual_strict


def _sim_run(protocol: str, out: Path) -> Path:
    from labrig.orchestrator.runner import RunRequest, execute_run
    from labrig.protocols.loader import dump_protocol_yaml, load_protocol

    proto = load_protocol(protocol)
    req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=out,
                     sim=True, seed=1)  # fmt: skip
    outcome, root = run_virtual_strict(execute_run(req))
    assert outcome.state.value == "finished", outcome.reason
    return root


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sim_run("rate_test", tmp_path_factory.mktemp("sim"))


def test_rate_test_against_its_own_records(rate_run: Path) -> None:
    a = analyze(rate_run)
    c = a.cycles
    stored = a.run.stored_cycles
    assert stored is not None and len(c) == len(stored) == 19
    m = c.merge(stored, on="cycle", suffixes=("", "_st"))
    for col in ("charge_capacity_mAh", "discharge_capacity_mAh", "coulombic_efficiency_pct",
                "discharge_capacity_mAh_g"):  # fmt: skip
        np.testing.assert_allclose(m[col], m[f"{col}_st"], rtol=5e-3, err_msg=col)
    np.testing.assert_allclose(m["discharge_energy_mWh"], m["discharge_energy_mWh_st"], rtol=5e-3)
    # and against ∫I dt of the time series
    df = a.run.series.to_pandas()
    dt = df["time_s"].diff()
    dt.iloc[0] = 0.0
    q = df["current_A"] * dt / 3.6  # mAh
    dis = -q[df["current_A"] < 0].groupby(df["cycle"]).sum()
    np.testing.assert_allclose(c["discharge_capacity_mAh"], dis.to_numpy(), rtol=5e-3)
    # the simulated cell's first cycle: charge 220–240, discharge 180–200 mAh/g, ICE 80–88 %
    k = a.key_numbers()
    assert 80 <= k["initial_ce_pct"] <= 88
    assert 180 <= k["first_discharge_capacity"] <= 205
    # a rate test: no retention or loss per cycle across its rate blocks
    assert a.reference_cycle is None and a.fade is None
    assert c["retention_pct"].isna().all()
    assert "rate test" in k["retention_note"]


def test_dqdv_marks_only_real_peaks(rate_run: Path) -> None:
    """Peaks stand clear of the baseline and of the cut-offs, at every rate (the 2C curves
    recorded every 5 mV used to show a dozen ripples as peaks)."""
    a = analyze(rate_run)
    assert a.dqdv
    for curve in a.dqdv:
        top = float(curve.dqdv.max())
        lo, hi = float(curve.voltage_V[0]), float(curve.voltage_V[-1])
        assert 1 <= len(curve.peaks_V) <= 3, (curve.cycle, curve.direction, curve.peaks_V)
        for v, h in zip(curve.peaks_V, curve.peak_heights, strict=True):
            assert h >= 0.2 * top, (curve.cycle, curve.direction, v, h / top)
            assert lo + 0.02 < v < hi - 0.02, (curve.cycle, curve.direction, v, lo, hi)


def test_rate_table_matches_the_protocol_blocks(rate_run: Path) -> None:
    a = analyze(rate_run)
    r = a.rates
    assert r["c_rate"].tolist() == [0.1, 0.25, 0.5, 1.0, 2.0]
    assert r["n_cycles"].tolist() == [3, 3, 3, 5, 5]
    assert (np.diff(r["discharge_capacity_mAh"]) < 0).all()  # capacity falls with rate
    assert r["normalised_pct"].iloc[0] == pytest.approx(100.0)  # 0.1C, the slowest
    stored = a.run.stored_cycles
    assert stored is not None
    stored = stored[stored["cycle"] != 1]  # the formation cycle is not in the block means
    by_rate = stored.groupby("discharge_c_rate", sort=True)["discharge_capacity_mAh"].mean()
    np.testing.assert_allclose(r.sort_values("c_rate")["discharge_capacity_mAh"],
                               by_rate.to_numpy(), rtol=5e-3)  # fmt: skip


def test_report_of_simulated_run(rate_run: Path, tmp_path: Path) -> None:
    a = analyze(rate_run)
    out = write_report(a, tmp_path / "sim.png")
    assert image_stats(out.read_bytes())[2] > 0.05


def test_eis_fit_recovers_the_simulated_charge_transfer_resistance() -> None:
    from labrig.simulators.cell import CellModel, circuit_elements, impedance, preset

    model = CellModel(preset())
    rng = np.random.default_rng(7)
    f = np.logspace(np.log10(7e6), np.log10(0.05), 82)
    for throughput in (0.0, 0.5, 50.0):  # fresh, formed, aged
        state = dataclasses.replace(model.fresh_state(), soc=0.5, formation_left_Ah=0.0,
                                    throughput_Ah=throughput)  # fmt: skip
        el = circuit_elements(model, state, 25.0)
        z = impedance(model, state, 25.0, f)
        z = z + np.abs(z) * 0.003 * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))
        fit = fit_spectrum(Spectrum("sim", None, f, z.real, z.imag))
        assert fit.ok, fit.message
        assert fit.param("R2") == pytest.approx(el.r_ct_ohm, rel=0.05)
        assert fit.param("R0") == pytest.approx(el.r_bulk_ohm, rel=0.05)
        assert fit.param("R1") == pytest.approx(el.r_gb_ohm, rel=0.10)


def test_long_term_run_with_eis_checkpoints(tmp_path: Path) -> None:
    root = _sim_run("long_term_eis", tmp_path)
    a = analyze(root)
    assert len(a.run.spectra) >= 2
    assert all(f.ok for f in a.eis), [f.message for f in a.eis]
    track = a.eis_track
    assert isinstance(track, pd.DataFrame) and "R2_ohm" in track
    # the interface resistance grows with cycling
    assert track["R2_ohm"].iloc[-1] > track["R2_ohm"].iloc[0]
    k = a.key_numbers()
    assert k["retention_last_pct"] < 100.0 and k["loss_pct_per_cycle"] > 0
