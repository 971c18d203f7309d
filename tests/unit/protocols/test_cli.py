"""`labrig validate`, `labrig schema` and `labrig library` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from labrig.orchestrator.cli import app

runner = CliRunner()


def test_validate_a_library_protocol_exits_0_with_a_summary() -> None:
    result = runner.invoke(app, ["validate", "endurance_1c_checkups"])
    assert result.exit_code == 0, result.output
    assert "1,022 cycles, 4 EIS" in result.stdout


def test_validate_a_broken_file_exits_2_with_located_errors(tmp_path: Path) -> None:
    bad = tmp_path / "rate.yaml"
    bad.write_text(
        "name: x\nlimits: {voltage_V: [2, 3.7], current_abs_mA: 5}\nsequence:\n"
        "  - Rest for 1 h\n  - Dischrge at 1C\n  - {step: rest, duration: 5}\n"
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{bad}:5: sequence.1: 'Dischrge at 1C' is not a step")
    assert lines[1].startswith(f"{bad}:6: sequence.2.duration: unknown field 'duration'")
    assert result.stdout == ""


def test_validate_with_set_overrides(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", "rate_test", "--set", "cell.cam_mass_mg=9.1"])
    assert ok.exit_code == 0 and "9.1 mg CAM" in ok.stdout
    # 2C of 20 mg is 8 mA, above the 5 mA limit: located at the 2C charge step
    bad = runner.invoke(app, ["validate", "rate_test", "--set", "cell.cam_mass_mg=20"])
    assert bad.exit_code == 2 and "above limits.current_abs_A" in bad.stderr
    malformed = runner.invoke(app, ["validate", "rate_test", "--set", "cell.cam_mass_mg"])
    assert malformed.exit_code == 2


def test_validate_a_mistyped_library_name_suggests_the_close_one() -> None:
    result = runner.invoke(app, ["validate", "rate_tset"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "rate_tset: no such file or library protocol; did you mean 'rate_test'?" in (
        result.stderr
    )


def test_validate_never_says_valid_before_refusing_the_station(tmp_path: Path) -> None:
    """A station file naming an unknown driver: exit 2 with the file:line, and no "valid"
    summary printed first (it used to print one, then the error)."""
    station = tmp_path / "station.yaml"
    station.write_text(
        "name: s\ninstruments:\n  c: {driver: macor, address: 'tcp://127.0.0.1:1'}\n"
        "positions:\n  - {name: A1, cycler: c/0}\n"
    )
    result = runner.invoke(app, ["validate", "rate_test", "--station", str(station)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{station}:3: instruments.c.driver: unknown driver 'macor'" in result.stderr


def test_schema_to_stdout_and_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "sequence" in schema["properties"]
    out = tmp_path / "protocol.schema.json"
    result = runner.invoke(app, ["schema", "--out", str(out)])
    assert result.exit_code == 0 and json.loads(out.read_text()) == schema


def test_library_lists_names() -> None:
    result = runner.invoke(app, ["library"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "endurance_1c_checkups" in result.stdout and "rate_test" in result.stdout
