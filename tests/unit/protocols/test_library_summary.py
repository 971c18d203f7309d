"""Every library protocol validates and summarises; the summary's arithmetic is right."""

from __future__ import annotations

import math

import pytest

from labrig.protocols import (
    dump_protocol_yaml,
    library_names,
    library_path,
    list_library,
    load_protocol,
    load_protocol_text,
    render_summary,
    summarize,
)
from labrig.protocols.models import EisStep
from labrig.protocols.summary import eis_sweep_s

EXPECTED = {
    "rate_test",
    "long_term_eis",
    "endurance_1000_1c",
    "endurance_1c_checkups",
    "benchmark_short",
    "gitt",
}


def test_library_lists_the_protocols_with_sources() -> None:
    entries = {e.name: e for e in list_library()}
    assert set(entries) >= EXPECTED
    for e in entries.values():
        assert e.path.is_file() and e.title and e.source
        # the publication itself (or its method), never a file this repository lacks
        assert "LITERATURE.md" not in e.source
        assert "Published" in e.source or "doi:" in e.source


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_library_protocol_validates_summarises_and_round_trips(name: str) -> None:
    p = load_protocol(name)
    assert p.cell is not None and p.cell.cam_mass_mg == 8.4
    assert p.cell.counter_electrode == "In/InLi"
    assert p.defaults.record.every_s == 10
    s = summarize(p)
    assert s.duration_s > 0 and not s.approximate
    assert render_summary(s).startswith(p.name)
    assert load_protocol_text(dump_protocol_yaml(p)) == p


def test_unknown_library_name_lists_the_names() -> None:
    with pytest.raises(ValueError, match="rate_test"):
        library_path("nope")
    assert sorted(library_names()) == library_names()


def test_endurance_with_checkups_matches_the_literature() -> None:
    s = summarize(load_protocol("endurance_1c_checkups"))
    assert s.eis == 4
    assert s.cycles == 2 + 1000 + 20  # formation, 1C cycles, a 0.1C check-up every 50
    assert 2500 < s.duration_h < 2900  # LITERATURE.md: ≈2,700 h (113 days)
    head = render_summary(s).splitlines()[0]
    assert "1,022 cycles, 4 EIS, est. 2," in head and "days)" in head


def test_short_benchmark_is_about_60_hours() -> None:
    s = summarize(load_protocol("benchmark_short"))
    # 3 x 0.05C half-cycles at 0.95 x 20 h, plus 3 x 1 h OCV: 60 h (LITERATURE.md ≈63 h)
    assert s.duration_h == pytest.approx(60.0)
    assert s.cycles == 1 and s.expanded_steps == 6


def test_rate_test_counts() -> None:
    s = summarize(load_protocol("rate_test"))
    assert s.cycles == 19 and s.eis == 0
    # 0.95 x (3x2x10 + 3x2x4 + 3x2x2 + 5x2x1 + 5x2x0.5) h
    assert s.duration_h == pytest.approx(0.95 * (60 + 24 + 12 + 10 + 5))


def test_eis_to_10_mhz_takes_about_18_minutes() -> None:
    step = EisStep(f_start_Hz=7e6, f_end_Hz=0.01, points_per_decade=10, amplitude_V=0.007)
    assert 16 * 60 < eis_sweep_s(step) < 20 * 60


def test_time_cap_and_capacity_cut_off_shorten_estimates() -> None:
    base = """\
name: t
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}
limits: {voltage_V: [2, 3.8], current_abs_mA: 5}
sequence:
"""
    s = summarize(load_protocol_text(base + "  - Charge at 0.1C until 3.7 V or 2 h\n"))
    assert s.duration_s == 7200
    s = summarize(load_protocol_text(base + "  - Charge at 0.1C until 50% capacity\n"))
    assert s.duration_h == pytest.approx(5.0)
    s = summarize(load_protocol_text(base + "  - Charge at 0.84 mA until 3.7 V\n"))
    assert s.duration_h == pytest.approx(0.95 / 0.5)  # 0.84 mA is 0.5C for this cell


def test_furnace_program_duration() -> None:
    text = """\
name: anneal
limits: {furnace_max_C: 800}
sequence:
  - Set gas N2 to 118.5 sccm
  - Set gas O2 to 31.5 sccm and wait 10 min
  - Ramp furnace to 400 °C at 2 K/min
  - Hold furnace for 1 h
  - Cool furnace to 25 °C at 5 °C/min
"""
    s = summarize(load_protocol_text(text))
    assert s.cycles == 0
    # 5 K/min down to 25 °C: followed while natural cooling is faster (above 25 + 5 K/min x
    # tau = 352 °C), then natural cooling to 30 °C (the default 5 K tolerance)
    tau = 5500.0 / 1.4
    t_352 = 25 + 5 / 60 * tau
    cool = (400 - t_352) / (5 / 60) + tau * math.log((t_352 - 25) / 5)
    assert s.duration_s == pytest.approx(600 + 375 / 2 * 60 + 3600 + cool, rel=2e-3)
    assert len(s.warnings) == 1 and "5 K/min is beyond the furnace below 352 °C" in s.warnings[0]


def test_checkpoints_not_counting_as_cycles_and_before_position() -> None:
    text = """\
name: t
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}
limits: {voltage_V: [2, 3.8], current_abs_mA: 5}
sequence:
  - repeat: 10
    steps: [Charge at 1C for 1 h, Discharge at 1C for 1 h]
    checkpoints:
      - every: 5
        position: before
        steps: [Charge at 1C for 1 h, Discharge at 1C for 1 h]
      - at: [3]
        counts_as_cycle: false
        steps: [Discharge at 1C for 1 h, Charge at 1C for 1 h]
"""
    s = summarize(load_protocol_text(text))
    assert s.cycles == 12 and s.expanded_steps == 26
    assert s.duration_h == pytest.approx(26)


def test_no_citation_of_files_the_repository_lacks() -> None:
    """Sources and comments cite publications and manuals, not internal notes."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    bad = []
    for folder in ("protocols", "drivers", "simulators", "orchestrator", "docs"):
        for path in (root / folder).rglob("*"):
            if path.suffix in (".py", ".yaml", ".md") and path.is_file():
                text = path.read_text(encoding="utf-8")
                for name in ("LITERATURE.md", "docs/INSTRUMENTS", "INSTRUMENTS.md"):
                    if name in text:
                        bad.append(f"{path.relative_to(root)}: {name}")
    assert not bad, bad
