"""Exactness of the channel engine on the simulated cell: charge, cut-offs, CC-CV."""

from __future__ import annotations

import numpy as np
import pytest

from labrig.simulators.cell import CellModel, Limits, Progress, preset, run_step
from labrig.simulators.engine import SimEnd, SimRecord, SimStep

from .conftest import V_MAX, V_MIN, cc, engine, rest, run_block, trapz


def test_charge_is_conserved_in_records_results_and_cell() -> None:
    eng = engine()
    i = eng.params.c_rate_A(0.5)
    steps = [cc(1, i, V_MAX, every=7.0), rest(2, 1800.0), cc(3, -i, V_MIN, every=13.0)]
    end = run_block(eng, 1, steps, 0.0)
    rec = eng.records_after(0, end)
    results = eng.step_results(end)
    assert [r.step_id for r in results] == [1, 2, 3]
    total = 0.0
    for r in results:
        m = rec["step_id"] == r.step_id
        t, cur, q = rec["time_s"][m], rec["current_A"][m], rec["step_charge_Ah"][m]
        integral_Ah = trapz(t, cur) / 3600.0
        assert integral_Ah == pytest.approx(r.charge_Ah, rel=1e-6, abs=1e-15)
        assert q[-1] == pytest.approx(r.charge_Ah, rel=1e-12, abs=1e-18)
        assert t[-1] - t[0] == pytest.approx(r.duration_s, rel=1e-12)
        total += r.charge_Ah
    # the cell's throughput counts exactly the charge passed
    st = eng.state_at(end)
    passed = sum(abs(r.charge_Ah) for r in results)
    assert st.throughput_Ah == pytest.approx(passed, rel=1e-9)
    # what did not lithiate went to side reactions: charge is conserved in the cell too
    assert total == pytest.approx(st.li_Ah + st.side_Ah, rel=1e-9)
    assert st.side_Ah > 0


def test_records_follow_the_record_rule_and_end_on_the_exact_final_point() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    end = run_block(eng, 1, [cc(1, i, V_MAX, every=10.0)], 0.0)
    rec = eng.records_after(0, end)
    t = rec["time_s"]
    np.testing.assert_allclose(t[:-1], np.arange(t.size - 1) * 10.0, atol=1e-9)
    assert t[-1] == pytest.approx(end)
    assert rec["voltage_V"][-1] == pytest.approx(V_MAX, abs=1e-9)
    assert np.all(np.diff(rec["seq"]) == 1)


@pytest.mark.parametrize("rate", [0.1, 1.0, 3.0])
def test_cutoffs_are_hit_exactly(rate: float) -> None:
    eng = engine()
    i = eng.params.c_rate_A(rate)
    end = run_block(eng, 1, [cc(1, i, V_MAX), cc(2, -i, V_MIN)], 0.0)
    ch, dis = eng.step_results(end)
    assert ch.reason == "voltage" and dis.reason == "voltage"
    assert abs(ch.end_voltage_V - V_MAX) < 1e-9
    assert abs(dis.end_voltage_V - V_MIN) < 1e-9
    rec = eng.records_after(0, end)
    last_of_ch = rec["voltage_V"][rec["step_id"] == 1][-1]
    assert abs(last_of_ch - V_MAX) < 1e-9
    # nothing before the end reached the cut-off: an event, not an overshoot
    assert np.all(rec["voltage_V"][rec["step_id"] == 1][:-1] < V_MAX)


def test_cccv_ends_on_current_exactly() -> None:
    eng = engine()
    i = eng.params.c_rate_A(0.5)
    cut = i / 10.0
    step = SimStep(
        1, "cccv", "charge", i, voltage_V=3.65,
        cv_ends=(SimEnd("current", "<=", cut),), record=SimRecord(every_s=30.0),
    )  # fmt: skip
    end = run_block(eng, 1, [step], 0.0)
    (r,) = eng.step_results(end)
    assert r.reason == "current"
    assert abs(r.end_current_A - cut) < 1e-12
    assert abs(r.end_voltage_V - 3.65) < 1e-9
    rec = eng.records_after(0, end)
    v, cur, q = rec["voltage_V"], rec["current_A"], rec["step_charge_Ah"]
    assert np.all(v <= 3.65 + 1e-9)
    hold = np.abs(v - 3.65) < 1e-9
    assert hold.sum() > 10  # a real hold phase, current decaying
    assert np.all(np.diff(cur[hold]) <= 1e-15)
    assert np.all(np.diff(q) > 0)
    assert q[-1] == pytest.approx(r.charge_Ah, rel=1e-12)


def test_cv_hold_from_rest_and_capacity_end() -> None:
    eng = engine()
    run_block(eng, 1, [cc(1, eng.params.c_rate_A(0.5), 3.4)], 0.0)
    now = eng.end_time()
    assert now is not None
    step = SimStep(2, "cv", "hold", 0.0, voltage_V=3.5,
                   ends=(SimEnd("capacity", ">=", 1e-4),))  # fmt: skip
    end = run_block(eng, 2, [step], now + 600.0)
    (r,) = eng.step_results(end)
    assert r.reason == "capacity"
    assert r.charge_Ah == pytest.approx(1e-4, rel=1e-9)


def test_capacity_and_time_ends_are_exact() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    steps = [
        SimStep(1, "cc", "charge", i, ends=(SimEnd("capacity", ">=", 2e-4),)),
        SimStep(2, "cc", "discharge", -i, ends=(SimEnd("time", ">=", 123.456),)),
    ]
    end = run_block(eng, 1, steps, 0.0)
    a, b = eng.step_results(end)
    assert a.charge_Ah == pytest.approx(2e-4, rel=1e-12)
    assert b.duration_s == pytest.approx(123.456, rel=1e-12)
    assert b.charge_Ah == pytest.approx(-i * 123.456 / 3600.0, rel=1e-12)


def test_runner_cap_equals_max_duration() -> None:
    p = preset()
    m = CellModel(p)
    st = m.fresh_state()
    step = SimStep(1, "cc", "charge", p.c_rate_A(1.0), ends=(SimEnd("voltage", ">=", 3.7),))
    a = run_step(m, st, step, 25.0, Limits(), Progress(), cap_s=500.0)
    capped = SimStep(1, "cc", "charge", p.c_rate_A(1.0), max_duration_s=500.0)
    b = run_step(m, st, capped, 25.0, Limits())
    assert a.state == b.state
    assert a.reason == "stopped" and b.reason == "max_duration"


def test_di_record_rule_in_a_hold() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    di = i / 20
    step = SimStep(
        1, "cccv", "charge", i, voltage_V=3.6, cv_ends=(SimEnd("current", "<=", i / 10),),
        record=SimRecord(every_s=None, dI_A=di),
    )  # fmt: skip
    end = run_block(eng, 1, [step], 0.0)
    rec = eng.records_after(0, end)
    hold = np.abs(rec["voltage_V"] - 3.6) < 1e-9
    cur = rec["current_A"][hold]
    assert cur.size >= 15  # (1 - 0.1) / 0.05 = 18 moves of dI
    assert np.all(np.abs(np.diff(cur)) < 1.5 * di)
