"""What a scientist writes first, as the papers write it: accepted with that meaning, or
refused with the accepted form named."""

from __future__ import annotations

import pytest

from labrig.protocols import ProtocolError, StepSyntaxError, load_protocol_text, parse_step
from labrig.protocols.models import CurrentStep, EisStep, FurnaceStep, RestStep


def _step(text: str) -> object:
    from pydantic import TypeAdapter

    from labrig.protocols.models import Step

    return TypeAdapter(Step).validate_python(parse_step(text))


def test_charge_to_a_voltage_is_until() -> None:
    s = _step("Charge at 0.1C to 2.75 V")
    assert isinstance(s, CurrentStep) and s.direction == "charge"
    (c,) = s.until
    assert (c.quantity, c.op, c.value) == ("voltage", ">=", 2.75)
    d = _step("Discharge at 0.1C to 1.35 V or 15 h")
    assert isinstance(d, CurrentStep) and d.until[0].op == "<=" and d.duration_s == 15 * 3600


def test_rest_at_ocv() -> None:
    for text in ("Rest for 10 h at OCV", "Rest at OCV for 10 h", "Rest for 10 h at open circuit"):
        s = _step(text)
        assert isinstance(s, RestStep) and s.duration_s == 36000.0, text


def test_furnace_phrasings() -> None:
    cool = _step("Cool furnace to 25 °C at 10 °C/min")
    assert isinstance(cool, FurnaceStep) and cool.action == "cool"
    assert cool.rate_K_per_s == pytest.approx(10 / 60)
    rt = _step("Cool furnace to room temperature")
    assert isinstance(rt, FurnaceStep) and rt.action == "cool" and rt.rate_K_per_s is None
    assert rt.target_C == 25.0 and rt.tolerance_K == 15.0  # done below 40 °C
    heat = _step("Heat furnace to 500 °C at 10 °C/min")
    assert isinstance(heat, FurnaceStep) and heat.action == "ramp" and heat.target_C == 500
    dwell = _step("Dwell at 500 °C for 30 min")
    assert isinstance(dwell, FurnaceStep) and dwell.action == "dwell"
    assert (dwell.target_C, dwell.duration_s) == (500.0, 1800.0)
    assert _step("Dwell for 2 h").duration_s == 7200.0  # type: ignore[attr-defined]


def test_eis_phrasings() -> None:
    s = _step("EIS from 7 MHz to 100 mHz with 10 mV amplitude")
    assert isinstance(s, EisStep) and s.amplitude_V == pytest.approx(0.01)
    assert s.f_start_Hz == 7e6 and s.f_end_Hz == pytest.approx(0.1)
    p = _step("PEIS from 7 MHz to 100 mHz, 10 mV amplitude, 10 per decade")
    assert isinstance(p, EisStep) and p.amplitude_V == pytest.approx(0.01)
    g = _step("GEIS from 100 kHz to 10 mHz with 10 µA amplitude")
    assert isinstance(g, EisStep) and g.amplitude_A == pytest.approx(1e-5)


@pytest.mark.parametrize(
    ("text", "suggested"),
    [
        ("PEIS from 7 MHz to 100 mHz, 10 µA amplitude", "GEIS"),
        ("GEIS from 7 MHz to 100 mHz, 10 mV amplitude", "PEIS"),
        ("Hold at 500 °C for 30 min", "Dwell at 500 °C for 30 min"),
        ("Heat to 500 °C at 10 °C/min", "Heat furnace to 500 °C"),
        ("Cool to room temperature", "Cool furnace to"),
    ],
)
def test_refused_with_the_accepted_form(text: str, suggested: str) -> None:
    with pytest.raises(StepSyntaxError, match=suggested):
        parse_step(text)


BASE = """\
name: x
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}
limits: {voltage_V: [2.0, 3.7], current_abs_mA: 5}
"""


def test_checkpoint_at_0_suggests_position_before() -> None:
    text = BASE + (
        "sequence:\n  - repeat: 3\n    steps: [Charge at 0.1C until 3.6 V, Rest for 1 h]\n"
        "    checkpoints:\n      - at: [0]\n        steps: [Rest for 1 h]\n"
    )
    with pytest.raises(ProtocolError) as exc:
        load_protocol_text(text, source_name="p.yaml")
    msg = str(exc.value)
    assert "p.yaml:" in msg and "position: before" in msg and "at: [1]" in msg


def test_defaults_temperature_suggests_the_documented_field() -> None:
    text = BASE + "defaults: {temperature: 25}\nsequence: [Rest for 1 h]\n"
    with pytest.raises(ProtocolError) as exc:
        load_protocol_text(text)
    assert "did you mean 'temperature_degC'" in str(exc.value)
