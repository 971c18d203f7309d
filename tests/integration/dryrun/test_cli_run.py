"""``labrig run`` from the command line: a dry run, and bad input that must not start one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app

runner = CliRunner()

GOOD = """\
name: tiny
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
sequence:
  - label: c
    repeat: 2
    steps: [Charge at 1C until 3.68 V, Discharge at 1C until 2.28 V]
"""

BAD = {
    "broken_yaml": ("name: x\nsequence: [\n", 3, None),
    "unknown_step": (GOOD.replace("Discharge at 1C", "Dischrge at 1C"), 7, "sequence.0.steps.1"),
    "missing_limits": (
        GOOD.replace("limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}\n", ""),
        1,
        "limits",
    ),
    "nan": (GOOD.replace("current_abs_mA: 10", "current_abs_mA: .nan"), 3, "limits"),
    "c_rate_no_mass": (GOOD.replace("cam_mass_mg: 8.4, ", ""), None, "cell"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_protocol_exits_2_with_location_and_no_run_directory(case: str, tmp_path: Path) -> None:
    text, line, field = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(path), "--sim", "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    message = result.output
    assert f"{case}.yaml" in message
    if line is not None:
        assert f"{case}.yaml:{line}:" in message
    if field is not None:
        assert field in message
    assert not out.exists() or not any(out.iterdir())


def test_set_overrides_cell_mass_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD)
    out = tmp_path / "runs"
    result = runner.invoke(
        app, ["run", str(path), "--sim", "--out", str(out), "--set", "cam_mass_mg=4.2", "-q"]
    )
    assert result.exit_code == 0, result.output
    (root,) = list(out.iterdir())
    cycles = pd.read_csv(root / "cycles.csv")
    assert len(cycles) == 2
    # half the mass, half the capacity in mAh, about the same in mAh/g
    assert cycles.discharge_capacity_mAh.iloc[-1] == pytest.approx(0.68, rel=0.1)
    assert 140 < cycles.discharge_capacity_mAh_g.iloc[-1] < 180


def test_unknown_library_name_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "no_such_protocol", "--sim", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "no_such_protocol" in result.output


def test_hardware_run_needs_a_station(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "rate_test", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--sim" in result.output


def test_resume_refuses_finished_runs_and_dry_runs(tmp_path: Path) -> None:
    import json

    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD)
    out = tmp_path / "runs"
    assert runner.invoke(app, ["run", str(path), "--sim", "--out", str(out), "-q"]).exit_code == 0
    (root,) = list(out.iterdir())
    result = runner.invoke(app, ["resume", str(root), "-q"])
    assert result.exit_code == 2 and "nothing to resume" in result.output
    meta = json.loads((root / "run.json").read_text())
    meta["state"] = "running"  # as a killed dry run would leave it
    (root / "run.json").write_text(json.dumps(meta))
    result = runner.invoke(app, ["resume", str(root), "-q"])
    assert result.exit_code == 2 and "dry run" in result.output
    for args in ([], ["--from-instrument"], ["--abort"]):
        result = runner.invoke(app, ["resume", str(tmp_path / "nope"), "-q", *args])
        said = " ".join(result.output.split())
        assert result.exit_code == 2
        assert said == f"error: cannot resume {tmp_path / 'nope'}: no such run directory"
    result = runner.invoke(app, ["resume", str(tmp_path), "-q"])
    assert result.exit_code == 2 and "not a run directory (it has no run.json)" in result.output
    result = runner.invoke(app, ["resume", str(path), "-q"])
    assert result.exit_code == 2 and "not a run directory (it is a file)" in result.output
