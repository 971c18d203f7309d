"""A ChannelStep as BioLogic techniques, and how a stopped step ended."""

from __future__ import annotations

import pytest

from labrig.drivers.biologic._cycling import FOREVER_S, plan_step, step_end
from labrig.drivers.biologic._params import CaLimit, CpLimit, ExitCond, IRange, LimitTest, Ocv
from labrig.drivers.capabilities import ChannelLimits, ChannelStep, EndCondition, RecordRule

LIM = ChannelLimits(v_min_V=2.5, v_max_V=4.3, i_max_A=0.01)
AMP = 1e-3


def cc(*ends: EndCondition, current: float = AMP, **kw: object) -> ChannelStep:
    return ChannelStep(1, "cc", "charge", current_A=current, ends=ends, **kw)  # type: ignore[arg-type]


def test_cc_to_a_voltage_with_the_limits_as_tests() -> None:
    plan = plan_step(cc(EndCondition("voltage", ">=", 4.2)), LIM, ewe_V=3.5)
    (tech,) = plan.techniques
    assert isinstance(tech, CpLimit) and tech.i_range == IRange.I_1mA
    (st,) = tech.steps
    assert st.setpoint == AMP and st.duration_s == FOREVER_S and st.exit == ExitCond.STOP
    assert st.tests == (LimitTest("E", True, 4.2), LimitTest("E", False, 2.5))
    assert (plan.up_V, plan.up_is_limit, plan.down_V, plan.down_is_limit) == (4.2, False, 2.5, True)


def test_a_capacity_end_at_constant_current_is_a_duration() -> None:
    plan = plan_step(cc(EndCondition("capacity", ">=", 0.5e-3),
                        EndCondition("time", ">=", 7200.0)), LIM, ewe_V=3.5)  # fmt: skip
    assert plan.duration_s == pytest.approx(1800.0) and plan.duration_reason == "capacity"
    assert plan.techniques[0].steps[0].duration_s == pytest.approx(1800.0)  # type: ignore[attr-defined]


def test_cross_takes_the_side_the_step_starts_on() -> None:
    up = plan_step(cc(EndCondition("voltage", "cross", 3.9)), LIM, ewe_V=3.5)
    down = plan_step(cc(EndCondition("voltage", "cross", 3.9), current=-AMP), LIM, ewe_V=4.1)
    assert (up.up_V, up.up_is_limit) == (3.9, False)
    assert (down.down_V, down.down_is_limit) == (3.9, False)


def test_rest_is_ocv_for_its_time_and_records_as_asked() -> None:
    step = ChannelStep(2, "rest", "rest", ends=(EndCondition("time", ">=", 600.0),),
                       record=RecordRule(every_s=30.0, dV_V=1e-3))  # fmt: skip
    (tech,) = plan_step(step, LIM, ewe_V=3.5).techniques
    assert tech == Ocv(600.0, 30.0, 1e-3)


def test_cccv_is_cplimit_then_calimit_holding_the_voltage() -> None:
    step = ChannelStep(3, "cccv", "charge", current_A=AMP, voltage_V=4.2,
                       cv_ends=(EndCondition("current", "<=", AMP / 20),))  # fmt: skip
    plan = plan_step(step, LIM, ewe_V=3.5)
    cc_part, cv_part = plan.techniques
    assert isinstance(cc_part, CpLimit) and isinstance(cv_part, CaLimit)
    assert cc_part.steps[0].exit == ExitCond.NEXT_TECHNIQUE
    assert cc_part.steps[0].tests[0] == LimitTest("E", True, 4.2)
    assert cv_part.steps[0].setpoint == 4.2
    assert cv_part.steps[0].tests == (LimitTest("I", False, AMP / 20), LimitTest("I", True, 0.01))


def test_steps_the_channel_cannot_run_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="dvdt"):
        plan_step(cc(EndCondition("dvdt", "<=", 1e-6)), LIM, ewe_V=3.5)
    with pytest.raises(ValueError, match="above the limit"):
        plan_step(cc(EndCondition("time", ">=", 1.0), current=0.02), LIM, ewe_V=3.5)
    with pytest.raises(ValueError, match="outside"):
        plan_step(ChannelStep(4, "cv", "hold", voltage_V=4.5), LIM, ewe_V=3.5)
    with pytest.raises(ValueError, match="time end"):
        plan_step(ChannelStep(5, "rest", "rest"), LIM, ewe_V=3.5)


@pytest.mark.parametrize(
    ("v", "t", "want"),
    [(4.2001, 100.0, ("voltage", "goto")), (2.5004, 100.0, ("safety", "abort")),
     (3.8, 3600.0, ("time", "end_block")), (3.8, 10.0, ("stopped", "end_block"))],
)  # fmt: skip
def test_how_a_cc_step_ended(v: float, t: float, want: tuple[str, str]) -> None:
    step = cc(EndCondition("voltage", ">=", 4.2, "goto", 0),
              EndCondition("time", ">=", 3600.0, "end_block"))  # fmt: skip
    plan = plan_step(step, LIM, ewe_V=3.5)
    got = step_end(plan, step_time_s=t, voltage_V=v, current_A=AMP, last_technique=0)
    assert got == want


def test_how_a_cv_hold_ended() -> None:
    step = ChannelStep(3, "cccv", "charge", current_A=AMP, voltage_V=4.2,
                       cv_ends=(EndCondition("current", "<=", 1e-4),))  # fmt: skip
    plan = plan_step(step, LIM, ewe_V=3.5)
    kw = {"step_time_s": 5000.0, "voltage_V": 4.2, "last_technique": 1}
    assert step_end(plan, current_A=1.05e-4, **kw) == ("current", "next")  # type: ignore[arg-type]
    assert step_end(plan, current_A=0.0099, **kw) == ("safety", "abort")  # type: ignore[arg-type]
    assert step_end(plan, current_A=5e-4, **kw)[0] == "stopped"  # type: ignore[arg-type]
