"""Channel firmware behaviour: stop, pause/resume, limits, end actions, noise, API errors."""

from __future__ import annotations

import numpy as np
import pytest

from labrig.simulators.cell import CellModel, Limits, Progress, run_step
from labrig.simulators.engine import (
    ChannelEngine,
    EngineBusy,
    EngineError,
    EngineFault,
    SimEnd,
    SimRecord,
    SimStep,
)

from .conftest import V_MAX, V_MIN, cc, engine, rest, run_block, trapz


def test_stop_mid_step_equals_a_step_capped_at_that_time() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    start = eng.state_at(0.0)
    eng.start_block(1, [cc(1, i, V_MAX)], 100.0)
    stop_at = 100.0 + 1234.567
    eng.stop(stop_at)
    capped = SimStep(1, "cc", "charge", i, max_duration_s=1234.567)
    ref = run_step(CellModel(eng.params), eng.model.rest(start, 100.0, 25.0), capped, 25.0,
                   Limits(1.0, 4.4, 0.05))  # fmt: skip
    assert eng.state_at(stop_at) == ref.state
    st = eng.status(stop_at)
    assert st.state == "done" and st.reason == "stopped" and st.current_A == 0.0
    (r,) = eng.step_results(stop_at)
    assert r.reason == "stopped" and r.duration_s == pytest.approx(1234.567)
    rec = eng.records_after(0, 1e9)
    assert rec["time_s"][-1] == pytest.approx(stop_at)
    assert rec["voltage_V"][-1] == pytest.approx(ref.end_voltage_V, abs=1e-12)
    assert st.last_seq == rec["seq"][-1]
    assert eng.end_time() == pytest.approx(stop_at)


def test_stop_during_cv_hold_equals_capped_step() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    step = SimStep(1, "cccv", "charge", i, voltage_V=3.6,
                   cv_ends=(SimEnd("current", "<=", i / 20),))  # fmt: skip
    start = eng.state_at(0.0)
    eng.start_block(1, [step], 0.0)
    end = eng.end_time()
    assert end is not None
    t_stop = end - 500.0
    assert eng.status(t_stop).voltage_V == pytest.approx(3.6, abs=1e-9)  # in the hold
    eng.stop(t_stop)
    capped = SimStep(1, "cccv", "charge", i, voltage_V=3.6, max_duration_s=t_stop)
    ref = run_step(eng.model, start, capped, 25.0, Limits(1.0, 4.4, 0.05), Progress())
    got = eng.state_at(t_stop)
    for f in ("soc", "delta", "v1", "v2", "throughput_Ah"):
        assert getattr(got, f) == pytest.approx(getattr(ref.state, f), rel=1e-12, abs=1e-15)


def test_pause_and_resume_continue_the_step() -> None:
    eng = engine()
    i = eng.params.c_rate_A(0.5)
    cap = 4e-4
    step = SimStep(1, "cc", "charge", i, ends=(SimEnd("capacity", ">=", cap),),
                   record=SimRecord(every_s=10.0))  # fmt: skip
    eng.start_block(7, [step, rest(2, 60.0)], 0.0)
    eng.pause(1000.0)
    assert eng.status(1500.0).state == "paused"
    assert eng.status(1500.0).current_A == 0.0
    assert eng.end_time() == 1000.0
    eng.resume(4000.0)
    end = eng.end_time()
    assert end is not None
    rec = eng.records_after(0, end)
    t = rec["time_s"]
    assert not np.any((t > 1000.0) & (t < 4000.0))  # output off while paused
    r1, _ = eng.step_results(end)
    assert r1.reason == "capacity"
    assert r1.charge_Ah == pytest.approx(cap, rel=1e-12)
    # step time excludes the pause
    assert r1.duration_s == pytest.approx(cap * 3600.0 / i, rel=1e-9)
    assert end == pytest.approx(cap * 3600.0 / i + 3000.0 + 60.0, rel=1e-9)
    m = rec["step_id"] == 1
    assert rec["step_charge_Ah"][m][-1] == pytest.approx(cap, rel=1e-12)
    assert eng.status(end).state == "done"


def test_limits_trip_at_the_exact_instant_and_latch() -> None:
    eng = engine()
    eng.set_limits(2.0, 3.6, 0.01)
    i = eng.params.c_rate_A(1.0)
    end = run_block(eng, 1, [cc(1, i, 3.7), rest(2, 60.0)], 0.0)
    st = eng.status(end + 1.0)
    assert st.state == "fault" and "v_max" in (st.reason or "")
    (r,) = eng.step_results(end)
    assert r.reason == "safety" and r.fault is not None
    assert abs(r.end_voltage_V - 3.6) < 1e-9
    assert eng.status(end - 1.0).state == "running"
    with pytest.raises(EngineFault):
        eng.start_block(2, [rest(1, 10.0)], end + 2.0)
    eng.reset(end + 3.0)
    assert eng.status(end + 3.0).state == "idle"
    eng.start_block(2, [rest(1, 10.0)], end + 4.0)
    assert eng.records_after(0, end + 14.0)["time_s"][-1] == pytest.approx(11.0)


def test_current_beyond_i_max_trips_at_once() -> None:
    eng = engine()
    eng.set_limits(2.0, 3.8, 1e-3)
    end = run_block(eng, 1, [cc(1, 2e-3, 3.7)], 5.0)
    assert end == 5.0
    st = eng.status(5.0)
    assert st.state == "fault" and "i_max" in (st.reason or "")


def test_end_actions_pause_abort_goto() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    steps = [
        SimStep(1, "cc", "charge", i, ends=(SimEnd("time", ">=", 60.0, "pause"),)),
        SimStep(2, "cc", "discharge", -i, ends=(SimEnd("time", ">=", 30.0, "abort"),)),
        rest(3, 10.0),
    ]
    eng.start_block(1, steps, 0.0)
    assert eng.status(61.0).state == "paused"
    eng.resume(100.0)
    end = eng.end_time()
    assert end is not None
    assert end == pytest.approx(130.0)
    st = eng.status(end)
    assert st.state == "done" and "aborted" in (st.reason or "")
    assert [r.step_id for r in eng.step_results(end)] == [1, 2]
    # goto: loop discharge pulses and rests until the voltage falls below 2.9 V
    eng2 = engine()
    run_block(eng2, 1, [cc(1, i, 3.6)], 0.0)
    t0 = eng2.end_time()
    assert t0 is not None
    loop = [
        SimStep(10, "cc", "pulse", -i, ends=(SimEnd("time", ">=", 60.0),
                                              SimEnd("voltage", "<=", 2.9, "end_block"))),
        SimStep(11, "rest", "rest", ends=(SimEnd("time", ">=", 30.0, "goto", goto=0),)),
    ]  # fmt: skip
    end2 = run_block(eng2, 2, loop, t0)
    res = eng2.step_results(end2)
    assert len(res) > 10
    assert res[-1].step_id == 10 and res[-1].action == "end_block"
    assert res[-1].end_voltage_V == pytest.approx(2.9, abs=1e-9)
    assert [r.step_id for r in res[:4]] == [10, 11, 10, 11]


def test_same_block_id_is_a_noop_and_other_blocks_are_refused_while_running() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    eng.start_block(1, [cc(1, i, V_MAX)], 0.0)
    end = eng.end_time()
    eng.start_block(1, [cc(1, -i, V_MIN)], 10.0)
    assert eng.end_time() == end
    with pytest.raises(EngineBusy):
        eng.start_block(2, [rest(1, 10.0)], 20.0)
    with pytest.raises(EngineBusy):
        eng.measure_impedance([1.0], now=30.0)
    with pytest.raises(EngineError, match="backwards"):
        eng.pause(5.0)


def test_records_only_up_to_now_with_running_seq() -> None:
    eng = engine()
    eng.start_block(1, [rest(1, 100.0, every=10.0)], 0.0)
    a = eng.records_after(0, 35.0)
    assert list(a["time_s"]) == [0.0, 10.0, 20.0, 30.0]
    b = eng.records_after(int(a["seq"][-1]), 100.0)
    assert list(b["time_s"]) == [40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert int(b["seq"][0]) == int(a["seq"][-1]) + 1
    assert eng.status(35.0).last_seq == 4


def test_seeded_noise_is_reproducible_and_of_the_right_size() -> None:
    def recs(seed: int, noise: float) -> dict[str, np.ndarray]:
        eng = ChannelEngine(seed=seed, noise=noise)
        eng.set_limits(1.0, 4.4, 0.05)
        end = run_block(eng, 1, [cc(1, eng.params.c_rate_A(0.5), V_MAX)], 0.0)
        return eng.records_after(0, end)

    a, b, c, exact = recs(7, 1.0), recs(7, 1.0), recs(8, 1.0), recs(7, 0.0)
    np.testing.assert_array_equal(a["voltage_V"], b["voltage_V"])
    np.testing.assert_array_equal(a["current_A"], b["current_A"])
    assert not np.array_equal(a["voltage_V"], c["voltage_V"])
    dv = a["voltage_V"] - exact["voltage_V"]
    assert 0.1e-3 < float(np.std(dv)) < 0.3e-3
    di = a["current_A"] - exact["current_A"]
    assert 0.02e-2 * 0.01 < float(np.std(di)) < 0.05e-2 * 0.01
    # the reported step charge stays the true one
    np.testing.assert_array_equal(a["step_charge_Ah"], exact["step_charge_Ah"])


def test_dv_record_rule_adds_points_where_voltage_moves() -> None:
    eng = engine()
    i = eng.params.c_rate_A(2.0)
    step = SimStep(1, "cc", "pulse", -i, ends=(SimEnd("time", ">=", 600.0),),
                   record=SimRecord(every_s=60.0, dV_V=2e-3))  # fmt: skip
    end = run_block(eng, 1, [cc(0, i / 2, 3.5), step], 0.0)
    rec = eng.records_after(0, end)
    m = rec["step_id"] == 1
    t, v = rec["time_s"][m], rec["voltage_V"][m]
    assert t.size > 600.0 / 60.0 + 5
    steps_v = np.abs(np.diff(v))
    assert np.all(steps_v < 2e-3 + 1e-3)  # no record misses a move of dV by much
    assert trapz(t, rec["current_A"][m]) / 3600 == pytest.approx(-i * 600 / 3600, rel=1e-9)


def test_temperature_change_while_running_replans() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    t_dis = run_block(eng, 1, [cc(0, i, V_MAX, every=60.0)], 0.0)
    eng.start_block(2, [cc(1, -i, V_MIN, every=60.0)], t_dis)
    eng.set_temperature(45.0, now=t_dis + 600.0)
    end = eng.end_time()
    assert end is not None
    rec = eng.records_after(0, end)
    assert set(rec["temperature_C"][rec["time_s"] < t_dis + 600.0]) == {25.0}
    assert set(rec["temperature_C"][rec["time_s"] > t_dis + 600.0]) == {45.0}
    (r,) = eng.step_results(end)
    assert r.end_voltage_V == pytest.approx(V_MIN, abs=1e-9)
    assert r.charge_Ah == pytest.approx(eng.records_after(0, end)["step_charge_Ah"][-1])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SimStep(1, "boost", "x"), "mode"),  # type: ignore[arg-type]
        (lambda: SimStep(1, "cccv", "x", 1e-3), "voltage_V"),
        (lambda: SimEnd("volts", ">=", 1.0), "quantity"),  # type: ignore[arg-type]
        (lambda: SimEnd("voltage", ">=", float("nan")), "finite"),
        (lambda: SimEnd("time", ">=", 1.0, "goto"), "goto"),
        (lambda: SimRecord(every_s=0.0), "every_s"),
    ],
)
def test_bad_steps_are_refused_with_a_clear_message(make: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()  # type: ignore[operator]


def test_bad_blocks_are_refused() -> None:
    eng = engine()
    with pytest.raises(EngineError, match="goto index 5"):
        eng.start_block(1, [SimStep(1, "rest", "r", ends=(SimEnd("time", ">=", 1, "goto", 5),))],
                        0.0)  # fmt: skip
    with pytest.raises(EngineError, match="set point"):
        eng.start_block(1, [SimStep(1, "cv", "h", voltage_V=4.9, max_duration_s=10)], 0.0)
    with pytest.raises(EngineError, match="rest needs an end"):
        eng.start_block(1, [SimStep(1, "rest", "r")], 0.0)
    with pytest.raises(EngineError, match="v_min"):
        eng.set_limits(3.0, 2.0, 0.01)
    with pytest.raises(ValueError, match="unknown cell preset"):
        ChannelEngine("nope")


def test_status_while_running_matches_the_records() -> None:
    eng = engine()
    i = eng.params.c_rate_A(0.5)
    eng.start_block(3, [rest(1, 60.0), cc(2, i, V_MAX, every=10.0)], 0.0)
    st = eng.status(560.0)
    assert st.state == "running" and st.block_id == 3 and st.step_id == 2
    assert st.step_time_s == pytest.approx(500.0)
    assert st.current_A == pytest.approx(i)
    rec = eng.records_after(0, 560.0)
    assert rec["time_s"][-1] == pytest.approx(560.0)
    assert st.voltage_V == pytest.approx(rec["voltage_V"][-1], abs=1e-12)
    assert st.last_seq == rec["seq"][-1]


def test_cross_op_and_notify_action() -> None:
    eng = engine()
    i = eng.params.c_rate_A(1.0)
    now = run_block(eng, 1, [cc(1, i, 3.5)], 0.0)
    steps = [
        SimStep(2, "cc", "discharge", -i, ends=(SimEnd("voltage", "cross", 3.2, "notify"),)),
        SimStep(3, "cc", "charge", i, ends=(SimEnd("voltage", "cross", 3.65),)),
    ]
    end = run_block(eng, 2, steps, now)
    a, b = eng.step_results(end)
    assert a.action == "notify" and a.end_voltage_V == pytest.approx(3.2, abs=1e-9)
    assert b.reason == "voltage" and b.end_voltage_V == pytest.approx(3.65, abs=1e-9)


def test_lto_cell_cycles_in_its_window() -> None:
    eng = engine("ncm85_lto")
    i = eng.params.c_rate_A(0.2)
    end = run_block(eng, 1, [cc(1, i, 2.75), cc(2, -i, 1.35)], 0.0)
    ch, dis = eng.step_results(end)
    assert 180 < ch.charge_Ah / eng.params.cam_mass_g * 1e3 < 250
    assert dis.end_voltage_V == pytest.approx(1.35, abs=1e-9)


def test_tiny_temperature_changes_do_not_replan() -> None:
    eng = engine()
    eng.start_block(1, [cc(1, eng.params.c_rate_A(0.5), V_MAX)], 0.0)
    before = eng.end_time()
    eng.set_temperature(25.001, now=100.0)
    assert eng.end_time() == before
    assert eng.temperature_C == 25.0
    eng.set_temperature(35.0, now=200.0)
    assert eng.end_time() != before
    assert eng.temperature_C == 35.0
