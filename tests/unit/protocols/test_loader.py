"""The YAML loader: valid files load, and every broken file is rejected at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from labrig.protocols import ProtocolError, dump_protocol_yaml, load_protocol, load_protocol_text
from labrig.protocols.models import CurrentStep, Loop

GOOD = """\
name: test
version: 1
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}
limits:
  voltage_V: [2.0, 3.75]
  current_abs_mA: 5
sequence:
  - label: cycling
    repeat: 2
    steps:
      - Charge at 0.1C until 3.7 V
      - Discharge at 0.1C until 2.0 V
  - step: cc
    direction: discharge
    current: 1 mA
    until: 2.5 V
"""


def issues(text: str, **kw: object) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(text, source_name="t.yaml", **kw)  # type: ignore[arg-type]
    return [(i.line, i.path, i.message) for i in info.value.issues]


def test_good_file_loads() -> None:
    p = load_protocol_text(GOOD)
    assert p.version == "1"
    loop = p.sequence[0]
    assert isinstance(loop, Loop) and loop.repeat == 2
    last = p.sequence[1]
    # a structured step's string `until` uses the step's direction: discharge -> '<='
    assert isinstance(last, CurrentStep) and last.until[0].op == "<="


def test_error_format_is_file_line_path_rule() -> None:
    text = GOOD.replace("Discharge at 0.1C until 2.0 V", "Dischrge at 1C")
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(text, source_name="rate.yaml")
    line = str(info.value).splitlines()[0]
    assert line.startswith("rate.yaml:12: sequence.0.steps.1: 'Dischrge at 1C' is not a step:")
    assert "expected Charge|Discharge|Rest" in line


BROKEN = [
    ("broken yaml", "name: x\nsequence: [Rest for 1 h\nlimits: {}\n", 3, "", "YAML syntax"),
    (
        "unknown step",
        GOOD.replace("Charge at 0.1C until 3.7 V", "Charge at 0.1C up to 3.7 V"),
        11,
        "sequence.0.steps.0",
        "is not a step",
    ),
    (
        "typo'd field",
        GOOD.replace("    until: 2.5 V", "    untill: 2.5 V"),
        16,
        "sequence.1.untill",
        "did you mean 'until'",
    ),
    (
        "typo'd cell field",
        GOOD.replace("cam_mass_mg", "cam_mas_mg"),
        3,
        "cell.cam_mas_mg",
        "did you mean 'cam_mass_mg'",
    ),
    (
        "a loop's field at the top",
        GOOD.replace("sequence:", "steps:"),
        7,
        "steps",
        "unknown field 'steps'; did you mean 'sequence'?",
    ),
    (
        "capacity by its common name",
        GOOD.replace("cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200", "capacity: 2"),
        3,
        "cell.capacity",
        "did you mean 'nominal_capacity_mAh'",
    ),
    (
        "missing limits",
        GOOD.replace("  voltage_V: [2.0, 3.75]\n", ""),
        4,
        "limits",
        "limits.voltage_V",
    ),
    (
        "NaN",
        GOOD.replace("current_abs_mA: 5", "current_abs_mA: .nan"),
        6,
        "limits.current_abs_mA",
        "not a finite number",
    ),
    (
        "inf",
        GOOD.replace("cam_mass_mg: 8.4", "cam_mass_mg: -.inf"),
        3,
        "cell.cam_mass_mg",
        "not a finite",
    ),
    (
        "inverted window",
        GOOD.replace("[2.0, 3.75]", "[3.75, 2.0]"),
        5,
        "limits.voltage_V",
        "min < max",
    ),
    (
        "negative duration",
        GOOD + "  - {step: rest, duration_s: -5}\n",
        17,
        "sequence.2.duration_s",
        "greater than or equal to 0",
    ),
    ("negative duration text", GOOD + "  - Rest for -5 min\n", 17, "sequence.2", "without a sign"),
    (
        "C-rate without cell mass",
        GOOD.replace(
            "cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}", "cell: {chemistry: NCM}"
        ),
        11,
        "sequence.0.steps.0",
        "a C-rate or capacity fraction needs cell.cam_mass_mg",
    ),
    (
        "python tag",
        GOOD + "  - !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        17,
        "",
        "YAML tags",
    ),
    ("any tag", "name: !custom x\nsequence: []\n", 1, "", "YAML tags"),
    (
        "duplicate key",
        GOOD.replace("version: 1\n", "version: 1\nname: again\n"),
        3,
        "",
        "duplicate key 'name'",
    ),
    ("top level list", "- Rest for 1 h\n", 1, "", "a protocol is a mapping"),
    ("empty", "", 1, "", "empty"),
    ("unknown step type", GOOD + "  - {step: teleport}\n", 17, "sequence.2", "unknown step type"),
    (
        "cut-off outside window",
        GOOD.replace("until 3.7 V", "until 4.2 V"),
        11,
        "sequence.0.steps.0",
        "4.2 V is outside limits.voltage_V",
    ),
    (
        "current above limit",
        GOOD.replace("current: 1 mA", "current: 6 mA"),
        13,
        "sequence.1",
        "above limits.current_abs_A",
    ),
    ("two documents", GOOD + "---\nname: y\n", 17, "", "one YAML document"),
    ("merge key", GOOD + "extra: &a {x: 1}\nmore:\n  <<: *a\n", 19, "", "merge keys"),
]


@pytest.mark.parametrize(
    ("text", "line", "path", "fragment"),
    [b[1:] for b in BROKEN],
    ids=[b[0] for b in BROKEN],
)
def test_broken_files_are_rejected_at_their_line(
    text: str, line: int, path: str, fragment: str
) -> None:
    found = issues(text)
    assert any(
        got_line == line and got_path == path and fragment in msg
        for got_line, got_path, msg in found
    ), found


def test_a_suggestion_is_never_the_unknown_name_itself() -> None:
    # "steps" is a loop's field: at the top of a protocol it is unknown, and offering
    # "steps" again would say nothing
    for line, path, msg in issues(GOOD.replace("sequence:", "steps:")):
        assert f"did you mean '{path.rsplit('.', 1)[-1]}'" not in msg, (line, path, msg)


def test_alias_bomb_is_rejected() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    text = "name: bomb\n" + "\n".join(lines) + "\nsequence: [Rest for 1 h]\n"
    ((line, _path, msg),) = issues(text)
    assert "aliases expand to more than" in msg and line is not None and line <= 11


def test_alias_step_budget() -> None:
    # 400 x 400 step strings through aliases: small file, 160k steps once expanded.
    many = ",".join(["Rest for 1 s"] * 400)
    text = (
        "name: wide\nlimits: {voltage_V: [2, 3], current_abs_mA: 1}\n"
        f"defs: &s [{many}]\n"
        "sequence:\n" + "".join("  - {label: g, steps: *s}\n" for _ in range(400))
    )
    found = issues(text)
    assert any("steps (after aliases) is more than 100,000" in m for _, _, m in found)


def test_nesting_beyond_our_bound_is_rejected_at_its_line() -> None:
    ((line, _, msg),) = issues("name: x\nsequence: " + "[" * 60 + "]" * 60 + "\n")
    assert "nesting deeper than 50" in msg and line == 2


def test_very_deep_nesting_is_refused_by_the_cli_without_a_run(tmp_path: Path) -> None:
    """Whichever layer stops it first (PyYAML has a bound of its own, worded its own way),
    the user gets exit 2, the file and line, and no run directory."""
    from typer.testing import CliRunner

    from labrig.orchestrator.cli import app

    deep = tmp_path / "deep.yaml"
    deep.write_text("name: x\nsequence: " + "[" * 5000 + "]" * 5000 + "\n")
    out = tmp_path / "runs"
    for args in (["validate", str(deep)], ["run", str(deep), "--sim", "--out", str(out)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"{deep}:2: "), result.stderr
        assert "nesting" in result.stderr.lower()
        assert "Traceback" not in result.output
    assert not out.exists()


def test_ten_megabyte_file_is_rejected(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: x\ndescription: " + "x" * (10 * 1024 * 1024) + "\n")
    with pytest.raises(ProtocolError) as info:
        load_protocol(big)
    assert "larger than 2 MB" in str(info.value)
    with pytest.raises(ProtocolError):
        load_protocol_text(big.read_text())


def test_all_errors_are_reported_together() -> None:
    text = GOOD.replace("Charge at 0.1C until 3.7 V", "Chrge at 1C").replace(
        "current: 1 mA", "current: 1 mA\n    bogus: 1"
    )
    found = issues(text)
    assert [(line, path) for line, path, _ in found] == [
        (11, "sequence.0.steps.0"),
        (16, "sequence.1.bogus"),
    ]


def test_overrides_set_cell_fields() -> None:
    p = load_protocol_text(GOOD, overrides={"cell.cam_mass_mg": "9.1"})
    assert p.cell is not None and p.cell.cam_mass_mg == 9.1
    no_cell = GOOD.replace("cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}\n", "")
    p = load_protocol_text(
        no_cell, overrides={"cell.cam_mass_mg": "8.4", "cell.c_rate_basis_mA_per_g": "190"}
    )
    assert p.cell is not None and p.cell.one_c_A() == pytest.approx(8.4e-3 * 190e-3)
    ((_line, path, msg),) = issues(GOOD, overrides={"cell.cam_mass_mg": "heavy"})
    assert path == "cell.cam_mass_mg" and "--set cell.cam_mass_mg=heavy" in msg
    ((_, path, msg),) = issues(GOOD, overrides={"limits.current_abs_mA": "50"})
    assert "cell fields only" in msg


def test_library_names_and_files(tmp_path: Path) -> None:
    p = load_protocol("rate_test")
    assert p.cell is not None and p.cell.c_rate_basis_mA_per_g == 200
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD)
    assert load_protocol(f) == load_protocol(str(f)) == load_protocol_text(GOOD)
    with pytest.raises(ProtocolError) as info:
        load_protocol("no_such_protocol")
    assert "rate_test" in str(info.value)


def test_dump_round_trip() -> None:
    p = load_protocol_text(
        GOOD + "  - EIS from 7 MHz to 10 mHz, 10 per decade, 7 mV amplitude at OCV\n"
        "  - {step: rest, duration_s: 60, record: {every_s: 1}}\n"
    )
    text = dump_protocol_yaml(p)
    assert "Charge at 0.1C until 3.7 V" in text  # steps stay readable
    assert load_protocol_text(text) == p
