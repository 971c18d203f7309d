"""``labrig run <anneal> --sim``, sample lookup, and what a furnace run refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.orchestrator.thermal import (
    GasPhase,
    PlanError,
    ProgrammePhase,
    compile_thermal,
    find_anneal_for_sample,
    group_by_anneal,
)
from labrig.protocols.library import library_names
from labrig.protocols.loader import load_protocol

runner = CliRunner()

THERMAL_LIBRARY = [
    "anneal_synthetic_air_300C",
    "anneal_synthetic_air_400C",
    "calcination_350C_2h_O2",
    "calcination_400C_2h_O2_natural_cooling",
    "postanneal_600C_8h",
    "precursor_500C_10h_750C_15h",
    "regeneration_750C_O2",
]


def test_cli_runs_the_library_anneal_and_records_its_samples(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = runner.invoke(
        app,
        [
            "run",
            "anneal_synthetic_air_400C",
            "--sim",
            "-q",
            "--out",
            str(out),
            "--set",
            "sample_id=NCM-7,NCM-8",
        ],
    )
    assert res.exit_code == 0, res.output
    (root,) = out.iterdir()
    assert (root / "thermal.parquet").is_file() and (root / "summary.json").is_file()
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "finished" and meta["samples"] == ["NCM-7", "NCM-8"]
    assert "finished" in res.output
    # the outcome speaks of the furnace (its dwell, its gas), not of cycles it has none of
    assert "dwell 400 °C" in res.output and "cycles" not in res.output

    # a later cell run names the sample its cathode came from
    cell_run = out / "cell-run-1"
    cell_run.mkdir()
    (cell_run / "run.json").write_text(json.dumps({"cell": {"sample_id": "NCM-8"}}))
    other = out / "cell-run-2"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"cell": {"sample_id": "unknown"}}))
    assert find_anneal_for_sample(out, "NCM-7") == root
    assert find_anneal_for_sample(out, "NCM-8") == root
    assert find_anneal_for_sample(out, "NCM-9") is None
    groups = group_by_anneal(out)
    assert groups[root] == [cell_run] and groups[None] == [other]


def test_the_latest_finished_anneal_wins(tmp_path: Path) -> None:
    for name, state, created in (
        ("a", "finished", "2026-01-01"),
        ("b", "aborted", "2026-03-01"),
        ("c", "finished", "2026-02-01"),
    ):
        (tmp_path / name).mkdir()
        meta = {"kind": "thermal", "samples": ["X"], "state": state, "created": created}
        (tmp_path / name / "run.json").write_text(json.dumps(meta))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    assert find_anneal_for_sample(tmp_path, "X") == tmp_path / "c"


def test_cli_refuses_a_cell_position_for_a_furnace_protocol(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "run",
            "anneal_synthetic_air_400C",
            "--sim",
            "-q",
            "--out",
            str(tmp_path),
            "--position",
            "ch0",
        ],
    )
    assert res.exit_code == 1, res.output
    assert "not a furnace position" in res.output.replace("\n", " ")
    (root,) = tmp_path.iterdir()
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "failed" and "refused" in meta["reason"]
    assert not (root / "thermal.parquet").exists()  # nothing was run


@pytest.mark.parametrize("name", THERMAL_LIBRARY)
def test_library_protocols_compile_to_controller_programmes(name: str) -> None:
    assert name in library_names()
    proto = load_protocol(name)
    assert proto.source and "Published" in proto.source and "LITERATURE.md" not in proto.source
    assert proto.limits.furnace_max_C is not None
    plan = compile_thermal(proto, ("N2", "O2", "Ar"))
    assert plan.peak_C < proto.limits.furnace_max_C
    progs = [p for p in plan.phases if isinstance(p, ProgrammePhase)]
    assert progs and all(len(p.segments) <= 15 for p in progs)
    # the atmosphere is set before the first programme
    assert isinstance(plan.phases[0], GasPhase)
    # every programme that cools is waited for before the gas is closed
    last = progs[-1]
    assert last.cool_to_C is not None
    assert all(
        isinstance(p, GasPhase) and p.trailing for p in plan.phases[plan.phases.index(last) + 1 :]
    )


def test_natural_cooling_is_a_step_and_rate_cooling_a_ramp() -> None:
    nat = compile_thermal(load_protocol("calcination_400C_2h_O2_natural_cooling"))
    rate = compile_thermal(load_protocol("regeneration_750C_O2"))
    (p1,) = [p for p in nat.phases if isinstance(p, ProgrammePhase)]
    (p2,) = [p for p in rate.phases if isinstance(p, ProgrammePhase)]
    assert [s.segment.kind for s in p1.segments] == ["ramp", "dwell", "step"]
    assert [s.segment.kind for s in p2.segments] == ["ramp", "dwell", "ramp"]
    assert p2.segments[-1].segment.rate_K_per_s == pytest.approx(5 / 60)
    assert p1.cool_to_C == 30.0  # 25 °C + the step's default 5 K tolerance


@pytest.mark.parametrize(
    ("text", "lines", "message"),
    [
        (
            "- Set gas He to 10 sccm\n- Ramp furnace to 100 °C at 2 K/min",
            ("N2",),
            "no gas line 'He'",
        ),
        ("- Set gas N2 to 10 sccm", ("N2",), "at least one furnace step"),
        ("- Hold furnace for 1 h", ("N2",), "a dwell needs a temperature"),
        ("- Ramp furnace to 100 °C at 2 K/min\n- Hold furnace for 10 s", ("N2",), "whole minutes"),
    ],
)
def test_bad_furnace_protocols_are_refused_with_the_step(
    text: str, lines: tuple[str, ...], message: str
) -> None:
    proto = load_protocol(f"name: x\nlimits: {{furnace_max_C: 500}}\nsequence:\n{_indent(text)}")
    with pytest.raises(PlanError, match=message):
        compile_thermal(proto, lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines()) + "\n"
