"""Whole-protocol bounds: EIS frequencies no instrument reaches, chamber and furnace
temperatures outside the protocol's limits, loop totals and durations beyond reason; and
``labrig validate`` taking the same --set options as ``labrig run``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.protocols import ProtocolError, list_library, load_protocol, load_protocol_text
from labrig.protocols.checks import EIS_FREQUENCY_HZ, MAX_LOOP_ITERATIONS
from labrig.protocols.summary import estimate_duration_s, summarize

runner = CliRunner()

_HEAD = (
    "name: t\ncell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}\n"
    "limits: {voltage_V: [2, 3.8], current_abs_mA: 5, temperature_degC: [0, 80]}\n"
    "sequence:\n"
)


def _issues(body: str) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(_HEAD + body, source_name="p.yaml")
    return [str(i) for i in info.value.issues]


@pytest.mark.parametrize(("start", "shown"), [("20 MHz", "20 MHz"), ("1e12 Hz", "1 THz")])
def test_eis_beyond_every_instrument_is_refused_at_its_line(start: str, shown: str) -> None:
    body = f"  - Rest for 1 min\n  - EIS from {start} to 1 Hz, 10 mV amplitude at OCV\n"
    (issue,) = _issues(body)
    assert issue.startswith("p.yaml:6: sequence.1: EIS up to " + shown)
    assert "10 µHz to 7 MHz" in issue


def test_eis_below_every_instrument_is_refused() -> None:
    (issue,) = _issues("  - EIS from 1 kHz to 1e-6 Hz, 10 mV amplitude at OCV\n")
    assert "EIS down to 1 µHz" in issue


def test_eis_inside_the_widest_band_loads() -> None:
    load_protocol_text(_HEAD + "  - EIS from 7 MHz to 10 mHz, 10 mV amplitude at OCV\n")


def test_the_protocol_band_is_the_widest_instrument_model() -> None:
    """No instrument labrig drives reaches beyond the protocol-level band, and the widest
    one reaches it (so the band is not narrower than a real instrument)."""
    from labrig.drivers.biologic._device import MODELS as BIOLOGIC
    from labrig.orchestrator.instruments.hw.gamry import MODELS as GAMRY
    from labrig.orchestrator.instruments.hw.palmsens import MODELS as PALMSENS

    bands = [(mdl.min_frequency_Hz, mdl.max_frequency_Hz) for mdl in BIOLOGIC.values()]
    bands += [band for band, _ in GAMRY.values()]
    bands += list(PALMSENS.values())
    assert min(lo for lo, _ in bands) == EIS_FREQUENCY_HZ[0]
    assert max(hi for _, hi in bands) == EIS_FREQUENCY_HZ[1]


def test_chamber_setpoint_outside_the_limits_is_refused() -> None:
    body = "  - {step: chamber, setpoint_C: 500}\n  - Charge at 1C until 3.7 V\n"
    (issue,) = _issues(body)
    assert issue.startswith("p.yaml:5: sequence.0: a chamber setpoint of 500 °C is outside")
    assert "[0, 80]" in issue


def test_default_chamber_temperature_outside_the_limits_is_refused() -> None:
    text = _HEAD.replace("sequence:\n", "defaults: {temperature_degC: 95}\nsequence:\n")
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(text + "  - Charge at 1C until 3.7 V\n", source_name="p.yaml")
    assert "defaults.temperature_degC: the chamber at 95 °C" in str(info.value)


def test_furnace_target_outside_the_temperature_limits_is_refused() -> None:
    text = (
        "name: f\nlimits: {temperature_degC: [0, 400], furnace_max_C: 900}\nsequence:\n"
        "  - Ramp furnace to 500 °C at 5 K/min\n"
    )
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(text, source_name="f.yaml")
    assert "f.yaml:4: sequence.0: a furnace target of 500 °C is outside" in str(info.value)


def test_three_nested_million_loops_are_refused_at_the_loop() -> None:
    body = (
        "  - repeat: 1000000\n    steps:\n"
        "      - repeat: 1000000\n        steps:\n"
        "          - repeat: 1000000\n            steps:\n"
        "              - Charge at 1C until 3.7 V\n"
        "              - Discharge at 1C until 2.0 V\n"
    )
    (issue,) = _issues(body)
    assert issue.startswith("p.yaml:7: sequence.0.steps.0: the loop runs 1,000,000,000,000")
    assert f"{MAX_LOOP_ITERATIONS:,}" in issue


def test_a_million_in_all_is_allowed() -> None:
    body = (
        "  - repeat: 1000\n    steps:\n      - repeat: 1000\n        steps:\n"
        "          - Rest for 10 s\n"
    )
    load_protocol_text(_HEAD + body)


def test_a_protocol_longer_than_ten_years_is_refused() -> None:
    body = "  - repeat: 100000\n    steps:\n      - Rest for 2 days\n"
    (issue,) = _issues(body)
    assert issue.startswith("p.yaml:4: sequence: the protocol would run about")
    assert "more than the 10 years" in issue


def test_validate_accepts_the_set_options_of_run(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", "rate_test", "--set", "cam_mass_mg=9.1"])
    assert ok.exit_code == 0, ok.output
    assert "9.1 mg CAM" in ok.stdout
    bad = runner.invoke(app, ["validate", "rate_test", "--set", "cam_mass_mg=20"])
    assert bad.exit_code == 2 and "above limits.current_abs_A" in bad.stderr


def test_validate_and_run_share_their_option_definitions() -> None:
    import typer.main

    def options(name: str) -> dict[str, str | None]:
        cmd = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
        return {p.name: p.help for p in cmd.params if p.name in ("set_", "position")}

    assert options("validate") == options("run")


def test_a_dry_run_of_eis_beyond_every_instrument_starts_nothing(tmp_path: Path) -> None:
    proto = tmp_path / "eis.yaml"
    proto.write_text(_HEAD + "  - EIS from 20 MHz to 1 Hz, 10 mV amplitude at OCV\n")
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", "--sim", "-q", str(proto), "--out", str(out)])
    assert result.exit_code == 2
    assert "EIS up to 20 MHz" in result.stderr
    assert not out.exists()


def test_validate_sim_refuses_what_run_sim_refuses() -> None:
    args = ["rate_test", "--set", "preset=no-such-cell"]
    assert runner.invoke(app, ["run", "--sim", "-q", *args]).exit_code == 2
    refused = runner.invoke(app, ["validate", "--sim", *args])
    assert refused.exit_code == 2 and "no-such-cell" in refused.stderr
    fits = runner.invoke(app, ["validate", "--sim", "long_term_eis"])
    assert fits.exit_code == 0 and "fits station 'sim'" in fits.stdout


@pytest.mark.parametrize("name", [e.name for e in list_library()])
def test_the_quick_duration_estimate_is_the_summary_s(name: str) -> None:
    protocol = load_protocol(name)
    assert estimate_duration_s(protocol) == pytest.approx(summarize(protocol).duration_s)


def test_the_duration_estimate_counts_checkpoints_by_their_firings() -> None:
    body = (
        "  - repeat: 10\n    steps: [Rest for 1 s]\n    checkpoints:\n"
        "      - {every: 3, steps: [Rest for 100 s]}\n"
        "      - {at: [1, 3, 10], steps: [Rest for 10000 s]}\n"
    )
    protocol = load_protocol_text(_HEAD + body)
    assert estimate_duration_s(protocol) == pytest.approx(10 + 3 * 100 + 3 * 10000)
    assert summarize(protocol).duration_s == pytest.approx(10 + 3 * 100 + 3 * 10000)
