"""GITT validity flags judged from the data, on cells whose diffusion time is known."""

from __future__ import annotations

import numpy as np

from labrig.protocols.analysis import GittGeometry, gitt_analysis

from .gitt_synth import drifting_gitt, sphere_gitt


def test_a_30_min_pulse_on_particles_with_r2_over_d_of_150_s_is_flagged() -> None:
    r = 2.5e-4  # 2.5 µm
    d = r**2 / 150.0  # R²/D = 150 s
    g = sphere_gitt(radius_cm=r, d_cm2_s=d, pulse_s=1800.0, rest_s=3600.0, n_pulses=3,
                    pulse_every_s=5.0)  # fmt: skip
    res = gitt_analysis(g.series, GittGeometry(particle_radius_cm=r))
    assert len(res) == 3
    assert res["flags"].str.contains("tau_not_short").all(), res["flags"].tolist()
    assert not res["valid"].any()
    # the transient itself says so: far from sqrt(t)
    assert (res["sqrt_t_departure"] > 0.5).all()


def test_a_pulse_well_inside_r2_over_d_is_valid_and_gives_d() -> None:
    r = 2.5e-4
    d = r**2 / 1.5e5  # R²/D = 1.5e5 s; a 10 min pulse is θ = 0.004
    g = sphere_gitt(radius_cm=r, d_cm2_s=d, pulse_s=600.0, rest_s=12 * 3600.0, n_pulses=4)
    res = gitt_analysis(g.series, GittGeometry(particle_radius_cm=r))
    assert len(res) == 4
    assert res["valid"].all(), res["flags"].tolist()
    assert (res["sqrt_t_departure"] < 0.2).all()
    # within the bias of the planar Weppner-Huggins reading for spheres at Dτ/R² = 0.004
    np.testing.assert_allclose(res["D_cm2_s"], d, rtol=0.25)


def test_the_flag_does_not_depend_on_the_radius_given() -> None:
    """The same long pulse is flagged whatever radius the user assumes (the old check
    reduced to 4/(9π)(ΔEs/ΔEt)², the same number for every radius and pulse length)."""
    r = 2.5e-4
    g = sphere_gitt(radius_cm=r, d_cm2_s=r**2 / 150.0, pulse_s=1800.0, rest_s=3600.0,
                    n_pulses=2, pulse_every_s=5.0)  # fmt: skip
    for radius in (0.5e-4, 2.5e-4, 10e-4):
        res = gitt_analysis(g.series, GittGeometry(particle_radius_cm=radius))
        assert res["flags"].str.contains("tau_not_short").all()


def test_long_rests_with_a_slow_drift_and_noise_are_relaxed() -> None:
    ts = drifting_gitt()  # 84 pulses, 4 h rests, 0.016 mV/h drift, σ 0.2 mV
    res = gitt_analysis(ts, GittGeometry(particle_radius_cm=2.5e-4))
    assert len(res) == 84
    assert not res["flags"].str.contains("not_relaxed").any(), res["flags"].value_counts()
    # the measured drift is the one put in, within its uncertainty
    drift = res["relax_drift_mV_h"]
    assert abs(drift.mean() - 0.016) < 4 * drift.std() / np.sqrt(len(drift))


def test_a_rest_cut_short_is_not_relaxed() -> None:
    ts = drifting_gitt(n_pulses=5, rest_s=400.0)  # a 300 s relaxation, 400 s rest
    res = gitt_analysis(ts, GittGeometry(particle_radius_cm=2.5e-4))
    assert res["flags"].str.contains("not_relaxed").all(), res["flags"].tolist()


def test_soc_follows_the_charge_passed() -> None:
    ts = drifting_gitt(n_pulses=10, rest_s=3600.0)
    res = gitt_analysis(ts, GittGeometry(particle_radius_cm=2.5e-4))
    np.testing.assert_allclose(res["soc"], np.arange(1, 11) / 10)
    assert (res["charge_mAh"] > 0).all()
