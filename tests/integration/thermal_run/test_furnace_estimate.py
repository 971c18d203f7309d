"""The estimate of a furnace run knows what the furnace can do, and validate says when a
programmed rate is beyond it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.protocols import load_protocol, summarize
from labrig.protocols.furnace_model import FurnaceModel

from .support import run_thermal

FAST_ANNEAL = """\
name: 500 °C anneal, 10 K/min up and down
limits: {furnace_max_C: 530}
sequence:
  - Set gas N2 to 100 sccm and wait 10 min
  - Heat furnace to 500 °C at 10 °C/min
  - Dwell at 500 °C for 30 min
  - Cool furnace to 25 °C at 10 °C/min
  - Set gas N2 to 0 sccm
"""


def test_the_model_is_the_simulated_furnace() -> None:
    from labrig.simulators.furnace.physics import FurnaceParams

    sim, model = FurnaceParams(), FurnaceModel()
    assert model.heat_capacity_J_per_K == sim.heat_capacity_J_per_K
    assert model.heater_max_W == sim.heater_max_W
    assert model.loss_W_per_K == sim.loss_W_per_K
    assert model.ambient_C == sim.ambient_C


@pytest.mark.parametrize("protocol", [FAST_ANNEAL, "anneal_synthetic_air_300C",
                                      "regeneration_750C_O2"])  # fmt: skip
def test_estimate_matches_the_dry_run(protocol: str, tmp_path: Path) -> None:
    estimate = summarize(load_protocol(protocol)).duration_s
    ran = run_thermal(protocol, tmp_path).outcome.run_time_s
    assert estimate == pytest.approx(ran, rel=0.12), (estimate / 3600, ran / 3600)


def test_validate_warns_when_a_rate_is_beyond_the_furnace(tmp_path: Path) -> None:
    path = tmp_path / "fast.yaml"
    path.write_text(FAST_ANNEAL)
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "warning" in text and "10 K/min is beyond the furnace below" in text, text
    assert "Heat furnace" not in text.split("warning", 1)[1]  # heating at 10 K/min is fine
    slow = FAST_ANNEAL.replace(
        "Cool furnace to 25 °C at 10 °C/min", "Cool furnace to 400 °C at 2 K/min"
    )
    path.write_text(slow)
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 0 and "warning" not in res.output, res.output
