"""dQ/dV, GITT and EIS fits on synthetic signals with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from labrig.protocols.analysis import (
    GittGeometry,
    fit_spectrum,
    gitt_analysis,
    guess_parameters,
    load_run,
    weppner_huggins_D,
)
from labrig.protocols.analysis import dqdv as dqdv_fn
from labrig.protocols.analysis.eis import DEFAULT_CIRCUIT
from labrig.protocols.analysis.loader import Spectrum

from .synth import SynthCell, synthetic_spectrum, write_cycling_run, write_gitt_run


def test_dqdv_peaks_at_known_voltages(tmp_path: Path) -> None:
    cell = SynthCell()
    w = write_cycling_run(tmp_path, [0.05, 0.05], cell=cell, every_s=10.0, rest_s=60.0)
    run = load_run(w.root)
    i = 0.05 * cell.one_c_A
    for direction, sign in (("charge", 1.0), ("discharge", -1.0)):
        curve = dqdv_fn(run.series, 2, direction, cam_mass_g=run.cam_mass_g)
        assert curve is not None and curve.per_gram
        assert len(curve.peaks_V) == 3
        # under current the peaks sit I·(R_ohm + R_pol) away from the OCV peaks
        shift = sign * i * (cell.r_ohm + cell.r_pol)
        np.testing.assert_allclose(curve.peaks_V, np.array(cell.peaks_V) + shift, atol=0.01)
        # the area under dQ/dV is the capacity
        area = float(np.sum(curve.raw) * 0.005)
        q = (w.charge_mAh[1] if direction == "charge" else w.discharge_mAh[1]) / cell.cam_g
        assert area == pytest.approx(q, rel=0.01)


def test_dqdv_bad_arguments(tmp_path: Path) -> None:
    w = write_cycling_run(tmp_path, [1.0], every_s=60.0, rest_s=60.0)
    run = load_run(w.root)
    with pytest.raises(ValueError, match="direction"):
        dqdv_fn(run.series, 1, "sideways")
    assert dqdv_fn(run.series, 99) is None


def test_weppner_huggins_formula() -> None:
    # D = 4/(πτ) (V/S)² (ΔEs/ΔEt)²; spheres: V/S = r/3
    assert weppner_huggins_D(100.0, 0.01, 0.02, 1e-4) == pytest.approx(
        4 / (math.pi * 100) * 1e-8 * 0.25
    )
    g = GittGeometry(particle_radius_cm=3e-4)
    assert g.volume_over_area_cm() == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="missing"):
        GittGeometry(molar_mass_g_mol=97.0).volume_over_area_cm()
    with pytest.raises(ValueError, match="positive"):
        GittGeometry(particle_radius_cm=-1.0)


def test_gitt_recovers_D_when_tau_is_short(tmp_path: Path) -> None:
    d, length = 1e-10, 5e-4  # D τ / L² = 0.024 for τ = 60 s
    root, geom = write_gitt_run(tmp_path, d_cm2_s=d, length_cm=length, pulse_s=60.0,
                                rest_s=3000.0)  # fmt: skip
    g = gitt_analysis(load_run(root).series, GittGeometry(**geom))
    assert len(g) == 5
    assert g["valid"].all(), g["flags"].tolist()
    np.testing.assert_allclose(g["D_cm2_s"], d, rtol=0.05)


def test_gitt_flags_long_pulses(tmp_path: Path) -> None:
    d, length = 1e-10, 1e-4  # D τ / L² = 6: far outside τ ≪ L²/D
    root, geom = write_gitt_run(tmp_path, d_cm2_s=d, length_cm=length, pulse_s=600.0,
                                rest_s=3000.0)  # fmt: skip
    g = gitt_analysis(load_run(root).series, GittGeometry(**geom))
    assert not g["valid"].any()
    assert g["flags"].str.contains("tau_not_short").all()
    assert (g["sqrt_t_departure"] > 0.5).all()
    # the method is then off by a large factor, which is why it is flagged
    assert (np.abs(g["D_cm2_s"] / d - 1) > 0.5).all()


def test_gitt_flags_unrelaxed(tmp_path: Path) -> None:
    d, length = 1e-10, 5e-4  # L²/D = 2500 s; a 100 s rest is far too short
    root, geom = write_gitt_run(tmp_path, d_cm2_s=d, length_cm=length, pulse_s=60.0,
                                rest_s=100.0)  # fmt: skip
    g = gitt_analysis(load_run(root).series, GittGeometry(**geom))
    assert g["flags"].str.contains("not_relaxed").all()


def test_eis_guesses_from_spectrum() -> None:
    f, z = synthetic_spectrum(r0=25, r1=12, r2=60, noise=0.0)
    p0 = guess_parameters(DEFAULT_CIRCUIT, f, z)
    assert p0[0] == pytest.approx(25, rel=0.1)
    assert p0[1] == pytest.approx(12, rel=0.3)
    assert p0[4] == pytest.approx(60, rel=0.3)


def test_eis_fit_recovers_elements_with_uncertainty() -> None:
    f, z = synthetic_spectrum(r0=25, r1=12, r2=60, noise=0.003, seed=3)
    fit = fit_spectrum(Spectrum("cycle_00001", 1, f, z.real, z.imag))
    assert fit.ok, fit.message
    assert fit.param("R0") == pytest.approx(25, rel=0.02)
    assert fit.param("R1") == pytest.approx(12, rel=0.05)
    assert fit.param("R2") == pytest.approx(60, rel=0.02)
    assert fit.param("CPE2_1") == pytest.approx(0.8, abs=0.02)
    # the uncertainty is meaningful: the truth lies within a few σ
    assert abs(fit.param("R2") - 60) < 5 * fit.param_stderr("R2")
    assert 0 < fit.param_stderr("R2") < 1.0
    assert fit.rel_rms_pct < 1.0
    t = fit.table()
    assert list(t["parameter"][:2]) == ["R0", "R1"]


def test_eis_fit_bad_spectrum_does_not_raise() -> None:
    f = np.array([1e3, 1e2, 1e1])
    bad = fit_spectrum(Spectrum("x", None, f, np.ones(3), -np.ones(3)))
    assert not bad.ok and "points" in bad.message
    with pytest.raises(ValueError, match="invalid circuit"):
        fit_spectrum(Spectrum("x", None, f, np.ones(3), -np.ones(3)), "R0-Q9-")
