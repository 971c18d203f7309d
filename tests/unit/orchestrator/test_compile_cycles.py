from __future__ import annotations

import numpy as np
import pytest

from labrig.orchestrator.compile import CompileError, StepCompiler
from labrig.orchestrator.cycles import CycleCounter
from labrig.protocols.models import CellSpec, CurrentStep, Protocol, PulseStep, RestStep

LIMITS = {"voltage_V": [2.0, 3.8], "current_abs_mA": 10}


def _protocol(cell: dict[str, object] | None) -> Protocol:
    return Protocol.model_validate(
        {
            "name": "t",
            "cell": cell,
            "limits": LIMITS,
            "sequence": [{"step": "rest", "duration_s": 10}],
        }
    )


def test_c_rate_becomes_current_from_cam_mass_and_basis() -> None:
    p = _protocol({"cam_mass_mg": 8.4, "c_rate_basis_mA_per_g": 190})
    comp = StepCompiler(p, p.cell)
    step = CurrentStep.model_validate(
        {
            "direction": "discharge",
            "current": "0.5C",
            "until": [{"quantity": "voltage", "op": "<=", "value": 2.28, "unit": "V"}],
        }
    )
    (cs,) = comp.compile(step)
    assert cs.channel_step.current_A == pytest.approx(-0.5 * 8.4e-3 * 0.190)
    assert cs.c_rate == pytest.approx(0.5)
    assert cs.channel_step.ends[0].op == "<="
    assert cs.channel_step.ends[0].value == 2.28


def test_c_rate_without_a_cell_is_a_compile_error() -> None:
    p = _protocol(None)
    comp = StepCompiler(p, None)
    step = CurrentStep.model_validate({"direction": "charge", "current": "1C", "duration_s": 60})
    with pytest.raises(CompileError, match="needs a cell"):
        comp.compile(step)


def test_cccv_moves_voltage_cutoff_to_cv_phase() -> None:
    cell = CellSpec(nominal_capacity_mAh=2.0)
    p = _protocol({"nominal_capacity_mAh": 2.0})
    comp = StepCompiler(p, cell)
    step = CurrentStep.model_validate(
        {
            "direction": "charge",
            "current": "1C",
            "until": [{"quantity": "voltage", "op": ">=", "value": 3.7, "unit": "V"}],
            "cv": {"until": [{"quantity": "current", "op": "<=", "value": 0.05, "unit": "C"}]},
        }
    )
    (cs,) = comp.compile(step)
    ch = cs.channel_step
    assert ch.mode == "cccv" and ch.voltage_V == 3.7 and ch.current_A == pytest.approx(2e-3)
    assert all(e.quantity != "voltage" for e in ch.ends)
    assert ch.cv_ends[0].value == pytest.approx(0.05 * 2e-3)


def test_pulse_train_expands_with_rests_and_unique_ids() -> None:
    p = _protocol({"nominal_capacity_mAh": 1.0})
    comp = StepCompiler(p, p.cell)
    step = PulseStep.model_validate(
        {"direction": "discharge", "current": "0.1C", "pulse_s": 600, "rest_s": 3600, "repeat": 3}
    )
    out = comp.compile(step)
    assert [c.channel_step.mode for c in out] == ["cc", "rest"] * 3
    ids = [c.channel_step.step_id for c in out]
    assert ids == sorted(set(ids))


def test_rest_uses_protocol_default_record_rule() -> None:
    p = _protocol(None)
    (cs,) = StepCompiler(p, None).compile(RestStep(duration_s=60))
    assert cs.channel_step.record.every_s == 10.0
    assert cs.channel_step.ends[0].quantity == "time"


def test_cycle_counter_charge_after_discharge_starts_new_cycle() -> None:
    c = CycleCounter()
    assert c.start_step("charge", True, None) is None
    c.add_charge(True, 2e-3)
    c.add_step_totals("charge", True, 2e-3, 7e-3, 3600, 1.0, 3600)
    assert c.start_step("rest", True, None) is None
    assert c.start_step("discharge", True, None) is None
    c.add_charge(True, -1.8e-3)
    c.add_step_totals("discharge", True, -1.8e-3, -6e-3, 3600, 1.0, 7200)
    ended = c.start_step("charge", True, None)
    assert ended is not None and ended.cycle == 1 and c.cycle == 2
    row = ended.row(cam_mass_g=8.4e-3)
    assert row["coulombic_efficiency_pct"] == pytest.approx(90.0)
    assert row["discharge_capacity_mAh_g"] == pytest.approx(1.8 / 8.4e-3)
    assert row["mean_discharge_voltage_V"] == pytest.approx(6e-3 / 1.8e-3)


def test_steps_that_do_not_count_leave_cycles_alone() -> None:
    c = CycleCounter()
    c.start_step("charge", True, None)
    c.start_step("discharge", True, None)
    assert c.start_step("charge", False, None) is None
    assert c.cycle == 1
    ch, dis = c.cumulative("charge", False, np.array([1e-3]))
    assert ch[0] == 0.0 and dis[0] == 0.0
