"""The simulated cell behaves like the lab's cells: OCV, rate, relaxation, first cycle,
fade, temperature and impedance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from labrig.simulators.cell import CellModel, OcvCurve, circuit_elements, impedance, preset
from labrig.simulators.engine import ChannelEngine, SimEnd, SimRecord, SimStep

from .conftest import V_MAX, V_MIN, cc, engine, rest, run_block


def cycle(eng: ChannelEngine, block: int, current: float, now: float,
          v_min: float = V_MIN, v_max: float = V_MAX,
          every: float = 600.0) -> tuple[float, float, float]:  # fmt: skip
    """One charge/discharge; returns (charge Ah, discharge Ah, end time)."""
    end = run_block(eng, block, [cc(1, current, v_max, every), cc(2, -current, v_min, every)],
                    now)  # fmt: skip
    ch, dis = eng.step_results(end)
    return ch.charge_Ah, -dis.charge_Ah, end


def mah_g(eng: ChannelEngine, q_Ah: float) -> float:
    return q_Ah / eng.params.cam_mass_g * 1e3


def test_ocv_curve_matches_the_literature_points() -> None:
    ocv = OcvCurve(0.62)
    for soc, v in [(0.1, 2.98), (0.5, 3.23), (0.9, 3.57), (1.0, 3.73)]:
        assert ocv.scalar(soc) == pytest.approx(v, abs=1e-3)
    assert ocv.scalar(0.0) < 2.5  # steep tail at empty
    lto = OcvCurve(1.55)
    socs = np.linspace(-0.1, 1.1, 50)
    # vs LTO = vs Li - 1.55 V = vs In/InLi + 0.62 V - 1.55 V
    assert float(np.max(np.abs(lto(socs) - (ocv(socs) + 0.62 - 1.55)))) < 1e-12
    assert np.all(np.diff(ocv(np.linspace(-0.5, 1.5, 2001))) > 0)
    assert ocv.soc_at(ocv.scalar(0.37)) == pytest.approx(0.37, abs=1e-6)


def test_first_cycle_irreversibility_and_later_efficiency() -> None:
    eng = engine()
    i = eng.params.c_rate_A(0.1)
    ch1, dis1, now = cycle(eng, 1, i, 0.0)
    assert 220 <= mah_g(eng, ch1) <= 240
    assert 180 <= mah_g(eng, dis1) <= 200
    assert 0.80 <= dis1 / ch1 <= 0.88
    ch2, dis2, _ = cycle(eng, 2, i, now)
    assert dis2 / ch2 >= 0.995
    assert dis2 / ch2 < 1.0  # side reactions never stop entirely


def test_rate_capability_orders_capacities() -> None:
    eng = engine("ncm83_sc_uncoated")
    now = 0.0
    caps = []
    for block, rate in enumerate((0.1, 0.1, 0.2, 0.5, 1.0, 2.0), start=1):
        _, dis, now = cycle(eng, block, eng.params.c_rate_A(rate), now, 2.28, 3.68)
        caps.append(mah_g(eng, dis))
    caps = caps[1:]
    assert all(a > b for a, b in itertools.pairwise(caps))
    # roughly the reported 199/190/175/160 mAh/g at 0.1/0.2/0.5/1C
    for got, want in zip(caps[:4], (199, 190, 175, 160), strict=True):
        assert got == pytest.approx(want, abs=8)


def test_relaxation_after_a_pulse_approaches_ocv() -> None:
    eng = engine()
    i = eng.params.c_rate_A(0.5)
    now = run_block(eng, 1, [cc(1, i, 3.5)], 0.0)
    steps = [
        SimStep(2, "cc", "pulse", -2 * i, ends=(SimEnd("time", ">=", 300.0),)),
        rest(3, 6 * 3600.0, every=60.0),
    ]
    end = run_block(eng, 2, steps, now)
    rec = eng.records_after(0, end)
    v = rec["voltage_V"][rec["step_id"] == 3]
    assert np.all(np.diff(v) > -1e-12)  # rises monotonically after a discharge pulse
    eq = eng.model.equilibrium_voltage(eng.state_at(end))
    assert v[0] < eq - 0.03
    assert abs(v[-1] - eq) < 2e-3
    assert abs(v[-1] - eq) < 0.1 * abs(v[0] - eq)


def test_dvdt_end_on_a_rest() -> None:
    eng = engine()
    now = run_block(eng, 1, [cc(1, eng.params.c_rate_A(1.0), 3.6)], 0.0)
    step = SimStep(2, "rest", "rest", ends=(SimEnd("dvdt", "<=", 1e-6),),
                   record=SimRecord(every_s=60.0))  # fmt: skip
    end = run_block(eng, 2, [step], now)
    (r,) = eng.step_results(end)
    assert r.reason == "dvdt"
    assert 600 < r.duration_s < 20 * 3600


def test_arrhenius_hotter_means_lower_resistance_and_more_capacity() -> None:
    m = CellModel(preset())
    st = m.fresh_state()
    cold, ref, hot = (m.coeffs(st, t) for t in (0.0, 25.0, 45.0))
    assert cold.rs > ref.rs > hot.rs
    assert cold.r_ct > ref.r_ct > hot.r_ct
    assert ref.r_bulk / hot.r_bulk == pytest.approx(
        np.exp(0.35 / 8.617333262e-5 * (1 / 298.15 - 1 / 318.15)), rel=1e-9
    )
    assert ref.r_ct / hot.r_ct == pytest.approx(
        np.exp(0.5 / 8.617333262e-5 * (1 / 298.15 - 1 / 318.15)), rel=1e-9
    )
    caps = []
    for temp in (10.0, 25.0, 45.0):
        eng = engine(temperature_C=temp)
        _, _, now = cycle(eng, 1, eng.params.c_rate_A(0.1), 0.0)
        _, dis, _ = cycle(eng, 2, eng.params.c_rate_A(1.0), now)
        caps.append(dis)
    assert caps[0] < caps[1] < caps[2]


def test_impedance_spectrum_shape() -> None:
    m = CellModel(preset())
    st = m.fresh_state()
    f = np.logspace(np.log10(7e6), np.log10(0.01), 120)
    z = impedance(m, st, 25.0, f)
    el = circuit_elements(m, st, 25.0)
    assert el.r_ct_ohm == pytest.approx(preset().r_ct_ohm)
    assert z.real[0] == pytest.approx(el.r_bulk_ohm, abs=0.3 * el.r_gb_ohm)
    assert np.all(np.diff(z.real) > 0)  # resistance grows towards low frequency
    assert np.all(-z.imag > 0)  # capacitive everywhere
    mi = -z.imag
    peaks = np.nonzero((mi[1:-1] > mi[:-2]) & (mi[1:-1] > mi[2:]))[0]
    assert peaks.size >= 2  # separate arcs (grain boundary, charge transfer, ...)
    # the charge-transfer arc spans about R_ct between its minima
    hf_min = z.real[0] + el.r_gb_ohm
    assert z.real[(f > 0.1) & (f < 1.0)].min() > hf_min + 0.8 * el.r_ct_ohm


def test_interface_resistance_grows_after_first_charge_and_with_cycling() -> None:
    eng = engine()
    f = [10.0, 1.0, 0.1]
    r_fresh = eng.circuit(0.0).r_ct_ohm
    now = run_block(eng, 1, [cc(1, eng.params.c_rate_A(0.1), V_MAX)], 0.0)
    r_formed = eng.circuit(now).r_ct_ohm
    assert r_formed > 1.5 * r_fresh
    z1 = eng.measure_impedance(f, now=now + 3600)
    eng.age(equivalent_cycles=500, now=now + 3600)
    assert eng.circuit(now + 3600).r_ct_ohm > r_formed * 1.2
    z2 = eng.measure_impedance(f, now=now + 3600)
    assert np.all(z2.real > z1.real)
    hot = engine(temperature_C=45.0)
    assert hot.measure_impedance(f)[0].real < engine().measure_impedance(f)[0].real


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [("ncm85_ininli", 0.74, 0.82), ("ncm83_sc_coated", 0.85, 0.91),
     ("ncm83_sc_uncoated", 0.68, 0.75)],
)  # fmt: skip
def test_fade_fast_path_matches_the_preset(name: str, lo: float, hi: float) -> None:
    """Capacity after 1000 1C cycles' worth of throughput (ageing fast-forwarded)."""
    eng = engine(name, temperature_C=45.0 if "sc" in name else 25.0)
    win = (2.28, 3.68) if "sc" in name else (V_MIN, V_MAX)
    i = eng.params.c_rate_A(1.0, 190.0 if "sc" in name else 200.0)
    _, _, now = cycle(eng, 1, eng.params.c_rate_A(0.1), 0.0, *win)
    _, _, now = cycle(eng, 2, eng.params.c_rate_A(0.1), now, *win)
    ch0, dis0, now = cycle(eng, 3, i, now, *win)
    # each 1C cycle moves (charge + discharge) of throughput; 1000 of them, as they fade
    per_cycle = (ch0 + dis0) / (2 * eng.params.capacity_Ah)
    eng.age(equivalent_cycles=1000 * per_cycle * (1 + hi) / 2, days=80, now=now)
    _, dis1, _ = cycle(eng, 4, i, now, *win)
    assert lo <= dis1 / dis0 <= hi


def test_one_hundred_full_cycles_fade_steadily() -> None:
    eng = engine("ncm83_sc_uncoated", temperature_C=45.0)
    i = eng.params.c_rate_A(1.0, 190.0)
    _, _, now = cycle(eng, 1, eng.params.c_rate_A(0.1, 190.0), 0.0, 2.28, 3.68)
    caps = []
    for n in range(100):
        _, dis, now = cycle(eng, 2 + n, i, now, 2.28, 3.68, every=60.0)
        caps.append(dis)
    c = np.array(caps)
    loss_per_cycle = (c[1] - c[-1]) / c[1] / 98
    assert 1e-4 < loss_per_cycle < 1e-3  # 0.01-0.1 % per cycle early on (sqrt term)
    assert np.all(np.diff(c[1:]) < 0)


def test_thousand_full_cycles_land_in_the_default_window() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    _, _, now = cycle(eng, 1, eng.params.c_rate_A(0.1), 0.0)
    caps = []
    for n in range(1000):
        _, dis, now = cycle(eng, 2 + n, i, now, every=3600.0)
        caps.append(dis)
    assert 0.76 <= caps[-1] / caps[0] <= 0.80
