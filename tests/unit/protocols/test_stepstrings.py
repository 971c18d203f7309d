"""Step strings: PyBaMM's strings keep their meaning; its traps are fixed; errors say where."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from labrig.protocols import (
    Step,
    StepSyntaxError,
    parse_conditions,
    parse_loop_condition,
    parse_step,
)
from labrig.protocols.models import (
    ChamberStep,
    CurrentStep,
    EisStep,
    FurnaceStep,
    PulseStep,
    RestStep,
)

STEP: TypeAdapter[Any] = TypeAdapter(Step)


def step(text: str) -> Any:
    return STEP.validate_python(parse_step(text))


def cond(c: Any) -> tuple[str, str, float, str]:
    return (c.quantity, c.op, round(c.value, 12), c.unit)


# text -> (step kind, direction, current (value, basis), duration_s, conditions)
PYBAMM = [
    (
        "Discharge at 1C until 2.5 V",
        "cc",
        "discharge",
        (1.0, "C"),
        None,
        [("voltage", "<=", 2.5, "V")],
    ),
    ("Rest for 10 minutes", "rest", None, None, 600.0, []),
    ("Charge at 1C until 4.2 V", "cc", "charge", (1.0, "C"), None, [("voltage", ">=", 4.2, "V")]),
    ("Hold at 4.2 V until C/50", "cv", None, None, None, [("current", "<=", 0.02, "C")]),
    (
        "Discharge at 1C for 1 hour or until 3.0 V",
        "cc",
        "discharge",
        (1.0, "C"),
        3600.0,
        [("voltage", "<=", 3.0, "V")],
    ),
    ("Discharge at 2 A for 30 minutes", "cc", "discharge", (2.0, "A"), 1800.0, []),
    ("Charge at 1 C until 4.1V", "cc", "charge", (1.0, "C"), None, [("voltage", ">=", 4.1, "V")]),
    ("Discharge at C/20 for 0.5 hours", "cc", "discharge", (0.05, "C"), 1800.0, []),
    ("Rest for 1 hour", "rest", None, None, 3600.0, []),
    (
        "Charge at 1C until 3.68 V or 2 h",
        "cc",
        "charge",
        (1.0, "C"),
        7200.0,
        [("voltage", ">=", 3.68, "V")],
    ),
    ("Hold at 4.1 V until 50 mA", "cv", None, None, None, [("current", "<=", 0.05, "A")]),
    (
        "Charge at 500 µA until 4.1 V",
        "cc",
        "charge",
        (5e-4, "A"),
        None,
        [("voltage", ">=", 4.1, "V")],
    ),
    (
        "Charge at 500 uA until 4.1 V",
        "cc",
        "charge",
        (5e-4, "A"),
        None,
        [("voltage", ">=", 4.1, "V")],
    ),
    ("Discharge at 800 nA for 10 m", "cc", "discharge", (8e-7, "A"), 600.0, []),
    ("Rest for 30 seconds", "rest", None, None, 30.0, []),
    (
        "Discharge at 190 mA/g until 2.28 V",
        "cc",
        "discharge",
        (190.0, "A/kg"),
        None,
        [("voltage", "<=", 2.28, "V")],
    ),
]


@pytest.mark.parametrize(("text", "kind", "direction", "current", "duration", "conds"), PYBAMM)
def test_pybamm_strings_keep_their_meaning(
    text: str, kind: str, direction: str | None, current: Any, duration: Any, conds: Any
) -> None:
    s = step(text)
    assert s.step == kind
    assert s.text == text
    if direction is not None:
        assert s.direction == direction
    if current is not None:
        assert (round(s.current.value, 12), s.current.basis) == current
    assert s.duration_s == duration
    assert [cond(c) for c in s.until] == conds


def test_hold_voltage() -> None:
    assert step("Hold at 4.2 V until C/50").voltage_V == 4.2


def test_several_or_until_conditions() -> None:
    s = step("Charge at 0.1C until 3.7 V or until 1.2 mAh or 80% capacity or 10 h")
    assert [cond(c) for c in s.until] == [
        ("voltage", ">=", 3.7, "V"),
        ("capacity", ">=", 0.0012, "Ah"),
        ("capacity", ">=", 0.8, "fraction"),
    ]
    assert s.duration_s == 36000.0


def test_rest_until_voltage_without_operator_crosses() -> None:
    s = step("Rest until 3.9 V")
    assert [cond(c) for c in s.until] == [("voltage", "cross", 3.9, "V")]


def test_explicit_operator_wins() -> None:
    s = step("Discharge at 1C until > 3.0 V")
    assert cond(s.until[0]) == ("voltage", ">", 3.0, "V")


def test_bare_current_condition_means_magnitude_below() -> None:
    s = step("Hold at 3.7 V until 20 µA")
    assert cond(s.until[0]) == ("current", "<=", 2e-5, "A")


def test_dvdt_condition() -> None:
    s = step("Rest for 2 h or until dV/dt < 1 mV/h")
    assert s.duration_s == 7200.0
    assert s.until[0].quantity == "dvdt"
    assert s.until[0].value == pytest.approx(1e-3 / 3600)


def test_cc_cv_in_one_step() -> None:
    s = step("Charge at 0.5C until 3.7 V then hold until C/20")
    assert isinstance(s, CurrentStep) and s.cv is not None
    assert s.cv_voltage_V() == 3.7
    assert cond(s.cv.until[0]) == ("current", "<=", 0.05, "C")
    s = step("Charge at 0.5C until 3.7 V, then hold for 2 h")
    assert s.cv is not None and s.cv.duration_s == 7200.0
    s = step("Charge at 0.5C until 3.7 V then hold at 3.65 V until C/20 or 3 h")
    assert s.cv is not None and s.cv.voltage_V == 3.65 and s.cv.duration_s == 10800.0


def test_pulse_train() -> None:
    s = step("Discharge pulse at 0.1C for 10 min, rest 1 h, repeat until 2.0 V")
    assert isinstance(s, PulseStep)
    assert (s.direction, s.pulse_s, s.rest_s, s.repeat) == ("discharge", 600.0, 3600.0, None)
    assert cond(s.until[0]) == ("voltage", "<=", 2.0, "V")
    s = step("Charge pulse at 1 mA for 30 s, rest for 5 min, repeat 20 times or until 3.7 V")
    assert (s.repeat, s.rest_s, cond(s.until[0])) == (20, 300.0, ("voltage", ">=", 3.7, "V"))
    assert step("Charge pulse at 1C for 10 s").repeat == 1


def test_measure_ocv_is_a_rest() -> None:
    s = step("Measure OCV for 1 h")
    assert isinstance(s, RestStep) and s.measure_ocv and s.duration_s == 3600.0


def test_eis_potentiostatic_and_galvanostatic() -> None:
    s = step("EIS from 7 MHz to 10 mHz, 10 per decade, 7 mV amplitude at OCV")
    assert isinstance(s, EisStep)
    assert (s.f_start_Hz, s.f_end_Hz, s.points_per_decade) == (7e6, 0.01, 10)
    assert (s.amplitude_V, s.amplitude_A, s.bias) == (0.007, None, "ocv")
    s = step("EIS from 1 MHz to 100 mHz, 5 points per decade, 10 µA amplitude at 3.1 V")
    assert s.amplitude_A == pytest.approx(1e-5) and s.amplitude_V is None
    assert (s.bias, s.bias_V) == ("voltage", 3.1)
    s = step("EIS from 100 kHz to 1 Hz, amplitude 5 mV, at 0 A, after 10 min rest")
    assert (s.bias, s.bias_A, s.rest_before_s) == ("current", 0.0, 600.0)


def test_thermal_and_gas_steps() -> None:
    s = step("Set temperature to 45 °C and wait until stable")
    assert isinstance(s, ChamberStep) and s.setpoint_C == 45.0 and s.wait is not None
    s = step("Set temperature to 25 degC and wait until stable within 0.2 K for 20 min")
    assert s.wait is not None and (s.wait.tolerance_K, s.wait.hold_s) == (0.2, 1200.0)
    assert step("Set temperature to 30 °C").wait is None
    s = step("Ramp furnace to 400 °C at 2 K/min")
    assert isinstance(s, FurnaceStep)
    assert (s.action, s.target_C, s.rate_K_per_s) == ("ramp", 400.0, pytest.approx(2 / 60))
    s = step("Hold furnace for 1 h")
    assert (s.action, s.duration_s) == ("dwell", 3600.0)
    s = step("Cool furnace to 25 °C")
    assert (s.action, s.target_C, s.rate_K_per_s) == ("cool", 25.0, None)
    s = step("Cool furnace to 25 °C at 5 °C/min")
    assert s.rate_K_per_s == pytest.approx(5 / 60)
    s = step("Set gas N2 to 118.5 sccm")
    assert (s.step, s.line, s.flow_sccm) == ("gas", "N2", 118.5)


def test_record_period() -> None:
    s = step("Discharge at 1C until 2.5 V every 10 s")
    assert s.record is not None and s.record.every_s == 10.0
    s = step("Rest for 1 h, every 1 s or 2 mV")
    assert s.record is not None and (s.record.every_s, s.record.dV_V) == (1.0, 0.002)
    s = step("Discharge at 1C for 1 hour (1 minute period)")  # PyBaMM's form
    assert s.record is not None and s.record.every_s == 60.0


def test_keywords_are_case_insensitive_units_are_not() -> None:
    assert step("discharge AT 1C UNTIL 2.5 V").direction == "discharge"
    s = step("EIS from 1 MHz to 1 mHz, 7 mV amplitude")
    assert (s.f_start_Hz, s.f_end_Hz) == (1e6, 1e-3)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Dischrge at 1C", "expected Charge|Discharge|Rest"),
        ("Dischrge at 1C", "word 1 ('Dischrge')"),
        ("Charge at 0.5 W for 1 h", "power setpoints ('0.5 W') are not supported"),
        ("Discharge at 2 Ohm for 1 h", "resistance setpoints"),
        ("Charge at 1C", "expected 'for' a time or 'until' a condition at the end"),
        ("Charge at 1C until 4.2 X", "word 5"),
        ("Charge at 1C until 4.2 V at 25oC", "temperature is a field"),
        ("Pulse at 1C for 10 s", "'Charge pulse at' or 'Discharge pulse at'"),
        ("Rest for -1 h", "without a sign"),
        ("Charge at -1 A until 3 V", "without a sign"),
        ("Rest for 1 h then jump", "expected 'for', 'until', 'or', 'every' or the end"),
        ("EIS from 1 MHz to 1 Hz", "amplitude"),
        ("Rest until 45 °C", "'T > 45 °C'"),
        ("", "an empty string"),
        ("Charge at 1C until 3 V" + " or 3 V" * 200, "longer than"),
    ],
)
def test_errors_name_what_and_where(text: str, fragment: str) -> None:
    with pytest.raises(StepSyntaxError) as info:
        parse_step(text)
    assert fragment in str(info.value)


def test_parse_conditions_uses_context() -> None:
    assert parse_conditions("3.68 V")[0]["op"] == "cross"
    assert parse_conditions("3.68 V", "charge")[0]["op"] == ">="
    assert parse_conditions("until 2.0 V or C/50", "discharge") == [
        {"quantity": "voltage", "op": "<=", "value": 2.0, "unit": "V"},
        {"quantity": "current", "op": "<=", "value": 0.02, "unit": "C"},
    ]
    assert parse_conditions("T > 40 °C")[0] == {
        "quantity": "temperature",
        "op": ">",
        "value": 40.0,
        "unit": "degC",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "discharge capacity < 80% of cycle 3",
            {"quantity": "discharge_capacity", "op": "<", "fraction": 0.8, "reference_cycle": 3},
        ),
        (
            "discharge_capacity < 1.2 mAh",
            {"quantity": "discharge_capacity", "op": "<", "value": pytest.approx(0.0012)},
        ),
        (
            "coulombic efficiency < 99%",
            {"quantity": "coulombic_efficiency", "op": "<", "value": 0.99},
        ),
        (
            "mean discharge voltage <= 3.2 V",
            {"quantity": "mean_discharge_voltage", "op": "<=", "value": 3.2},
        ),
    ],
)
def test_loop_conditions(text: str, expected: dict[str, Any]) -> None:
    assert parse_loop_condition(text) == expected


@pytest.mark.parametrize(
    "text", ["discharge capacity < 80%", "capacity < 1 mAh", "coulombic efficiency 99%"]
)
def test_bad_loop_conditions(text: str) -> None:
    with pytest.raises(StepSyntaxError):
        parse_loop_condition(text)
