"""What the status lines print: whole run directories, ETAs in days."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.orchestrator.commands._format import duration_text
from labrig.orchestrator.commands.mqtt_cli import render_table


def test_durations_read_in_days() -> None:
    assert duration_text(1773.54 * 3600) == "73 d 21 h"
    assert duration_text(5 * 3600 + 7 * 60) == "5 h 07 min"
    assert duration_text(720) == "12 min"
    assert duration_text(45) == "45 s"
    assert duration_text(None) == "–"


def test_monitor_shows_the_eta_in_days() -> None:
    from rich.console import Console

    row = {"station": "lab", "channel": "ch0", "state": "running", "step": "Charge at 1C",
           "cycle": 12, "voltage_V": 3.4, "current_A": 1.6e-3, "temperature_C": 45.0,
           "eta_s": 1773.54 * 3600, "age_s": 3.0, "stale": False, "offline": False}  # fmt: skip
    console = Console(record=True, width=160)
    console.print(render_table([row], "t"))
    text = console.export_text()
    assert "73 d 21 h" in text and "1773:" not in text


def test_the_run_directory_is_printed_whole(tmp_path: Path) -> None:
    out = tmp_path / ("a-rather-long-folder-name-for-the-runs-of-this-lab" * 2)
    text = """\
name: one short cycle with a long name so the run id is long as well as the folder
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}
limits: {voltage_V: [2.0, 3.75], current_abs_mA: 5}
sequence: [Charge at 2C until 3.7 V or 10 min, Discharge at 2C until 2.0 V or 10 min]
"""
    path = tmp_path / "p.yaml"
    path.write_text(text)
    res = CliRunner().invoke(app, ["run", str(path), "--sim", "-q", "--out", str(out)],
                             terminal_width=80)  # fmt: skip
    assert res.exit_code == 0, res.output
    (root,) = out.iterdir()
    assert any(line.strip() == f"run directory: {root}" for line in res.output.splitlines())
