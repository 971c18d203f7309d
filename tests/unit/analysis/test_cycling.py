"""Per-cycle table, retention, fade and rate capability on synthetic runs with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labrig.protocols.analysis import (
    analyze,
    cycle_table,
    dc_resistance,
    fade_rate,
    load_run,
    rate_table,
    rest_relaxation,
    retention,
    segment_series,
)
from labrig.protocols.analysis.loader import TimeSeries

from .synth import SynthCell, write_cycling_run

RATES = [0.1] * 3 + [0.25] * 3 + [0.5] * 3 + [1.0] * 5 + [2.0] * 5


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    w = write_cycling_run(tmp_path_factory.mktemp("rate"), RATES, every_s=20.0)
    return w.root, w


def test_capacities_and_ce_match_construction(rate_run: tuple[Path, object]) -> None:
    root, w = rate_run
    run = load_run(root)
    seg = segment_series(run.series)
    c = cycle_table(run.series, cam_mass_g=run.cam_mass_g, one_c_A=run.one_c_A, segments=seg)
    assert c["cycle"].tolist() == list(range(1, len(RATES) + 1))
    np.testing.assert_allclose(c["charge_capacity_mAh"], w.charge_mAh, rtol=1e-9)  # type: ignore[attr-defined]
    np.testing.assert_allclose(c["discharge_capacity_mAh"], w.discharge_mAh, rtol=1e-9)  # type: ignore[attr-defined]
    assert c["coulombic_efficiency_pct"].iloc[0] == pytest.approx(85.0, rel=1e-9)
    np.testing.assert_allclose(c["coulombic_efficiency_pct"].iloc[1:], 99.8, rtol=1e-9)
    np.testing.assert_allclose(c["discharge_capacity_mAh_g"].iloc[0], 200.0, rtol=1e-9)
    # C-rates inferred from the current (no stored table passed) match the schedule
    np.testing.assert_allclose(c["discharge_c_rate"], RATES)
    np.testing.assert_allclose(c["charge_c_rate"], RATES)


def test_capacity_agrees_with_integrated_current(rate_run: tuple[Path, object]) -> None:
    """What the run's own records integrate to (∫I dt per cycle) agrees within 0.5 %."""
    root, _ = rate_run
    run = load_run(root)
    c = cycle_table(run.series, cam_mass_g=run.cam_mass_g)
    df = run.series.to_pandas()
    dt = df["time_s"].diff().fillna(df["time_s"].iloc[0])
    q = (df["current_A"] * dt / 3600.0).groupby(df["cycle"])
    ch = q.apply(lambda s: s[s > 0].sum()) * 1e3
    dis = -q.apply(lambda s: s[s < 0].sum()) * 1e3
    np.testing.assert_allclose(c["charge_capacity_mAh"], ch.to_numpy(), rtol=5e-3)
    np.testing.assert_allclose(c["discharge_capacity_mAh"], dis.to_numpy(), rtol=5e-3)


def test_energy_and_mean_voltage(rate_run: tuple[Path, object]) -> None:
    root, _ = rate_run
    run = load_run(root)
    c = cycle_table(run.series, cam_mass_g=run.cam_mass_g)
    stored = run.stored_cycles
    assert stored is not None
    np.testing.assert_allclose(c["discharge_energy_mWh"], stored["discharge_energy_mWh"], rtol=5e-3)
    assert ((c["mean_discharge_voltage_V"] > 2.9) & (c["mean_discharge_voltage_V"] < 3.5)).all()
    assert (c["voltage_hysteresis_V"] > 0).all()


def test_rate_table_matches_blocks(rate_run: tuple[Path, object]) -> None:
    root, _w = rate_run
    a = analyze(root)
    r = a.rates
    assert r["c_rate"].tolist() == [0.1, 0.25, 0.5, 1.0, 2.0]
    assert r["n_cycles"].tolist() == [3, 3, 3, 5, 5]
    assert r["first_cycle"].tolist() == [1, 4, 7, 10, 15]
    cell = SynthCell()
    for row in r.itertuples():
        # the run's first cycle (formation) is not part of a block's mean
        cyc = range(max(int(row.first_cycle), 2), int(row.last_cycle) + 1)
        expect = np.mean([cell.discharge_mAh(n, row.c_rate) for n in cyc])
        assert row.discharge_capacity_mAh == pytest.approx(expect, rel=1e-9)
    assert r["normalised_pct"].iloc[0] == pytest.approx(100.0)
    assert r["normalised_pct"].iloc[-1] == pytest.approx(
        100 * r["discharge_capacity_mAh"].iloc[-1] / r["discharge_capacity_mAh"].iloc[0]
    )


def test_retention_and_fade_known_line(tmp_path: Path) -> None:
    # loss of exactly 0.02 % of Q0 per cycle at one rate
    cell = SynthCell(fade=lambda n: 1.0 - 2e-4 * (n - 1))
    w = write_cycling_run(tmp_path, [1.0] * 40, cell=cell, every_s=60.0, rest_s=60.0)
    a = analyze(w.root)
    assert a.reference_cycle == 1
    ret = a.cycles["retention_pct"]
    expect = 100 * np.array([cell.fade(n) for n in range(1, 41)])
    np.testing.assert_allclose(ret, expect, atol=1e-6)
    assert a.fade is not None
    assert a.fade.loss_pct_per_cycle == pytest.approx(0.02, rel=1e-6)
    k = a.key_numbers()
    assert k["retention_last_pct"] == pytest.approx(expect[-1], abs=1e-6)
    # another reference cycle and span
    fit = fade_rate(a.cycles, reference_cycle=11, span=(11, 30))
    assert fit is not None and (fit.first_cycle, fit.last_cycle) == (11, 30)
    assert fit.loss_pct_per_cycle == pytest.approx(0.02 / cell.fade(11), rel=1e-6)
    r11 = retention(a.cycles, 11)
    assert r11.iloc[10] == pytest.approx(100.0)


def test_default_reference_skips_formation_and_checkups(tmp_path: Path) -> None:
    rates = [0.1, 0.1] + [1.0] * 10 + [0.1] + [1.0] * 10
    w = write_cycling_run(tmp_path, rates, every_s=60.0, rest_s=60.0)
    a = analyze(w.root)
    assert a.reference_cycle == 3
    assert a.fade is not None and a.fade.n_cycles == 20  # check-up cycle left out
    assert list(a.rates["c_rate"]) == [0.1, 1.0, 0.1, 1.0]


def test_relaxed_voltage_overpotential_and_dcir(rate_run: tuple[Path, object]) -> None:
    root, w = rate_run
    run = load_run(root)
    seg = segment_series(run.series)
    rests = rest_relaxation(seg)
    after_ch = rests[rests["after"] == "charge"]
    assert len(after_ch) == len(RATES)
    np.testing.assert_allclose(after_ch["relaxed_voltage_V"], w.relaxed_after_charge_V,  # type: ignore[attr-defined]
                               atol=1e-3)  # fmt: skip
    np.testing.assert_allclose(after_ch["loaded_voltage_V"], w.loaded_after_charge_V,  # type: ignore[attr-defined]
                               atol=1e-3)  # fmt: skip
    assert (after_ch["overpotential_V"] > 0).all()
    assert (rests.loc[rests["after"] == "discharge", "overpotential_V"] < 0).all()
    # current interruption at the end of charge: R = R_ohm + R_pol·p·(1 - e^(-dt/τ))
    cell = SynthCell()
    dc = dc_resistance(run.series, seg)
    cut = dc[(dc["transition"] == "interruption") & (dc["step_type"] == "rest")]
    assert len(cut) == 2 * len(RATES)
    dt = 20.0
    expect_hi = cell.r_ohm + cell.r_pol * (1 - math.exp(-dt / cell.tau_pol_s))
    assert cut["resistance_ohm"].between(cell.r_ohm - 2, expect_hi + 2).all()


def test_dcir_at_fixed_time() -> None:
    # one rest and a 10-record current step with R = 10 Ω instantly and 5 Ω after 3 s
    t = np.arange(20, dtype=float)
    i = np.where(t >= 10, 0.01, 0.0)
    v = 3.0 + i * 10 + np.where(t >= 13, i * 5, 0.0)
    kind = np.where(t >= 10, 1, 3).astype(np.int8)
    ts = TimeSeries({"time_s": t, "cycle": np.ones(20, np.int32), "step": kind.astype(np.int32),
                     "kind": kind, "current_A": i, "voltage_V": v})  # fmt: skip
    seg = segment_series(ts)
    assert dc_resistance(ts, seg)["resistance_ohm"].iloc[0] == pytest.approx(10.0)
    assert dc_resistance(ts, seg, after_s=4.0)["resistance_ohm"].iloc[0] == pytest.approx(15.0)


def test_empty_and_incomplete_tables() -> None:
    assert cycle_table(TimeSeries()).empty
    assert rate_table(pd.DataFrame({"cycle": [], "discharge_c_rate": [], "complete": []})).empty


# ------------------------------------------------ rate tests: no retention across rate blocks


def test_a_rate_test_has_no_retention_or_fade_across_its_blocks(
    rate_run: tuple[Path, object],
) -> None:
    root, _ = rate_run
    a = analyze(root)
    assert a.reference_cycle is None and a.fade is None
    assert a.cycles["retention_pct"].isna().all()
    k = a.key_numbers()
    assert k.get("retention_last_pct") is None and k.get("loss_pct_per_cycle") is None
    assert "rate test" in (k.get("retention_note") or "")
    assert set(k["rate_capability"]) == {"0.1C", "0.25C", "0.5C", "1C", "2C"}


def test_rate_table_normalises_to_the_slowest_block_not_the_first(tmp_path: Path) -> None:
    rates = [0.5] * 3 + [0.1] * 3 + [1.0] * 3
    w = write_cycling_run(tmp_path, rates, every_s=60.0, rest_s=60.0)
    r = analyze(w.root).rates
    assert r["c_rate"].tolist() == [0.5, 0.1, 1.0]
    assert r.loc[r["c_rate"] == 0.1, "normalised_pct"].iloc[0] == pytest.approx(100.0)
    assert r.loc[r["c_rate"] == 0.5, "normalised_pct"].iloc[0] < 100.0
    # told otherwise: normalised to the 0.5C block
    r5 = rate_table(analyze(w.root).cycles, normalise_to=0.5)
    assert r5.loc[r5["c_rate"] == 0.5, "normalised_pct"].iloc[0] == pytest.approx(100.0)


def test_rate_table_never_normalises_to_formation(tmp_path: Path) -> None:
    """Formation (cycle 1, and blocks labelled formation) is not the 100 % of a rate table."""
    rates = [0.05] * 2 + [0.1] * 3 + [0.5] * 3 + [1.0] * 3
    blocks = ["formation"] * 2 + ["rate_0.1C"] * 3 + ["rate_0.5C"] * 3 + ["rate_1C"] * 3
    cell = SynthCell(rate_factor=lambda r: 1.0 - 0.1 * r)
    w = write_cycling_run(tmp_path, rates, cell=cell, every_s=120.0, rest_s=60.0,
                          blocks=blocks)  # fmt: skip
    r = analyze(w.root).rates
    assert r.loc[r["c_rate"] == 0.1, "normalised_pct"].iloc[0] == pytest.approx(100.0)
    form = r[r["c_rate"] == 0.05]
    assert len(form) == 1 and bool(form["formation"].iloc[0])


def test_endurance_retention_only_at_the_ageing_rate(tmp_path: Path) -> None:
    rates = [0.1, 0.1] + [1.0] * 12 + [0.1] + [1.0] * 12
    w = write_cycling_run(tmp_path, rates, every_s=60.0, rest_s=60.0)
    a = analyze(w.root)
    assert a.reference_cycle == 3
    c = a.cycles
    at_ref = np.isclose(c["discharge_c_rate"], 1.0)
    assert c.loc[at_ref, "retention_pct"].notna().all()
    assert c.loc[~at_ref, "retention_pct"].isna().all()  # formation and check-up: no value
    assert (c.loc[at_ref, "retention_pct"] <= 100.0 + 1e-9).all()
    assert "rate_capability" not in a.key_numbers()  # two rates in blocks: not a rate test
