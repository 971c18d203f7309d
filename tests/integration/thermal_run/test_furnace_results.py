"""What ``labrig analyze`` and ``labrig report`` show of a furnace run, and what its run
directory holds (no empty cell-run files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.protocols.analysis.furnace import furnace_results, load_furnace_run

from .support import SHORT, run_thermal

runner = CliRunner()


@pytest.fixture(scope="module")
def furnace_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_thermal(SHORT, tmp_path_factory.mktemp("furnace")).root


def test_a_furnace_run_directory_has_no_cell_run_files(furnace_run: Path) -> None:
    names = {p.name for p in furnace_run.iterdir()}
    assert {"thermal.parquet", "summary.json", "run.json", "protocol.yaml"} <= names
    assert not names & {"cycles.csv", "cycles.parquet", "data", "eis"}, names


def test_results_show_ramp_rates_dwell_and_gas(furnace_run: Path) -> None:
    res = furnace_results(load_furnace_run(furnace_run))
    kinds = [s["kind"] for s in res["steps"]]
    assert kinds == ["ramp", "dwell", "cool"]
    ramp, dwell, cool = res["steps"]
    assert ramp["programmed_rate_K_min"] == pytest.approx(10.0)
    assert ramp["measured_rate_K_min"] == pytest.approx(10.0, rel=0.05)
    assert dwell["programmed_min"] == pytest.approx(120.0)
    assert 110.0 <= dwell["within_tolerance_min"] <= dwell["duration_min"] + 1e-9
    # 10 K/min down from 400 °C is beyond the furnace: it cools at its natural rate
    assert cool["programmed_rate_K_min"] == pytest.approx(10.0)
    assert cool["measured_rate_K_min"] < 7.0
    assert res["gas"]["N2"]["mean_flow_sccm"] == pytest.approx(118.5, rel=0.02)
    assert res["gas"]["O2"]["used_L"] > 0


def test_cli_analyze_and_report_a_furnace_run(furnace_run: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["analyze", str(furnace_run)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "ramp to 400 °C" in text and "programmed 10 K/min" in text
    assert "dwell at 400 °C" in text and "within ±5 K" in text
    assert "gas N2" in text and "L used" in text
    res = runner.invoke(app, ["analyze", str(furnace_run), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"][0]["kind"] == "ramp"
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<svg"), (".pdf", b"%PDF")):
        out = tmp_path / f"f{suffix}"
        res = runner.invoke(app, ["report", str(furnace_run), "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert magic in out.read_bytes()[:400]
    res = runner.invoke(app, ["report", str(furnace_run)])
    assert res.exit_code == 0, res.output
    page = (furnace_run / "report.html").read_text()
    assert "ramp to 400 °C" in page and "data:image/png" in page
