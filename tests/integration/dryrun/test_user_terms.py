"""Mistakes a scientist makes first, told in their terms before anything runs or after
the run stops: an unknown cell preset, a cell resting outside the protocol's window."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.protocols.loader import dump_protocol_yaml, load_protocol
from tests.helpers import run_virtual_strict

runner = CliRunner()

LOW_LIMIT = """\
name: low limit
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190, counter_electrode: In/InLi}
limits: {voltage_V: [2.25, 3.75], current_abs_mA: 5.0}
sequence:
  - Charge at 0.1C until 3.68 V
  - Discharge at 0.1C until 2.28 V
"""


def test_an_unknown_preset_is_a_short_error_and_no_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = runner.invoke(app, ["run", "rate_test", "--sim", "-q", "--out", str(out),
                              "--set", "preset=coated"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.splitlines()) <= 6, res.output
    assert "'coated'" in res.output and "ncm83_sc_coated" in res.output
    assert not out.exists() or not any(out.iterdir())


def test_the_presets_are_listed_in_run_help() -> None:
    res = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for name in ("ncm85_ininli", "ncm83_sc_coated", "ncm83_sc_uncoated", "ncm85_lto"):
        assert name in text, name


def test_validate_warns_when_the_simulated_cell_rests_outside_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "low.yaml"
    path.write_text(LOW_LIMIT)
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "warning" in text and "2.2 V" in text and "2.25 V" in text, text
    # a window that holds the rest voltage: no warning
    path.write_text(LOW_LIMIT.replace("2.25, 3.75", "2.0, 3.75"))
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0 and "warning" not in res.output, res.output


def test_a_cell_below_the_window_fails_in_the_users_terms(tmp_path: Path) -> None:
    proto = load_protocol(LOW_LIMIT)
    req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=tmp_path,
                     sim=True)  # fmt: skip
    outcome, _root = run_virtual_strict(execute_run(req))
    reason = outcome.reason or ""
    assert outcome.state.value == "failed"
    assert not reason.startswith("instrument fault"), reason
    assert "voltage" in reason and "2.21" in reason and "below" in reason, reason
    assert "2.25 V" in reason and "limits.voltage_V" in reason, reason
    assert "step 1" in reason and "cycler" in reason, reason


def test_the_help_lists_every_preset_the_simulator_has() -> None:
    from labrig.orchestrator.instruments.sim.presets import PRESET_HELP, PRESET_NAMES
    from labrig.simulators.cell import PRESETS

    assert sorted(PRESET_NAMES) == sorted(PRESETS)
    assert all(name in PRESET_HELP for name in PRESETS)
