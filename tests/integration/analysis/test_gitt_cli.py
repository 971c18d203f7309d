"""``labrig analyze RUN --gitt``: the per-pulse table printed and written as gitt.csv, with
the geometry used named (given or assumed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from tests.unit.analysis.synth import write_gitt_run

runner = CliRunner()


@pytest.fixture(scope="module")
def gitt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, _ = write_gitt_run(tmp_path_factory.mktemp("gitt"), d_cm2_s=1e-10, length_cm=5e-4,
                             pulse_s=60.0, rest_s=3000.0)  # fmt: skip
    return root


def test_analyze_gitt_prints_and_writes_the_pulses(gitt_dir: Path) -> None:
    res = runner.invoke(app, ["analyze", str(gitt_dir), "--gitt", "--particle-radius-um", "3"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "GITT: 5 pulses" in text and "given: spheres of radius 3 µm" in text
    table = pd.read_csv(gitt_dir / "gitt.csv")
    assert len(table) == 5
    for col in ("soc", "delta_Es_V", "delta_Et_V", "D_cm2_s", "flags", "valid"):
        assert col in table.columns
    assert table["soc"].tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_without_a_radius_the_report_says_it_was_assumed(gitt_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "g.csv"
    res = runner.invoke(app, ["analyze", str(gitt_dir), "--gitt", "--gitt-csv", str(csv)])
    assert res.exit_code == 0, res.output
    assert "assumed: spheres of radius 2.5 µm" in " ".join(res.output.split())
    assert csv.is_file()
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(gitt_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "assumed: spheres of radius 2.5 µm" in out.read_text()
    res = runner.invoke(app, ["analyze", str(gitt_dir), "--particle-radius-um", "-1"])
    assert res.exit_code == 2 and "--particle-radius-um" in res.output
