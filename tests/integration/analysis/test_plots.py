"""What the plots show a scientist: every point on its axes, whole-number cycle ticks, no
empty or one-point panels, legends off the data, and the file formats asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.protocols.analysis import analyze, compare_figure, report_figure, write_report
from labrig.protocols.analysis.report import write_compare
from tests.unit.analysis.synth import SynthCell, write_cycling_run

RATE_TEST = [0.1] * 3 + [0.25] * 3 + [0.5] * 3 + [1.0] * 5 + [2.0] * 5
LONG_ID = "20261203-101506-Rate-capability-0.1C-2C-dry-coated-NCM-In-InLi-c72b180f"


@pytest.fixture(scope="module")
def rate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = write_cycling_run(tmp_path_factory.mktemp("rt"), RATE_TEST, every_s=60.0, rest_s=300.0,
                          run_id=LONG_ID)  # fmt: skip
    return w.root


@pytest.fixture(scope="module")
def aging_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cell = SynthCell(fade=lambda n: 1.0 - 8e-4 * (n - 1))
    w = write_cycling_run(tmp_path_factory.mktemp("ag"), [1.0] * 30, cell=cell, every_s=120.0,
                          rest_s=60.0, run_id=LONG_ID.replace("Rate", "Aging"))  # fmt: skip
    return w.root


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.get_axes() if ax.get_title()]


def _axis(fig: Figure, ylabel: str) -> Axes:
    return next(ax for ax in fig.get_axes() if ax.get_ylabel().startswith(ylabel))


def test_ce_axis_shows_the_first_cycle(rate_dir: Path) -> None:
    a = analyze(rate_dir)
    fig = report_figure(a)
    ce = _axis(fig, "Coulomb efficiency")
    first = float(a.cycles["coulombic_efficiency_pct"].iloc[0])
    assert first == pytest.approx(85.0, abs=0.1)
    lo, hi = ce.get_ylim()
    assert lo < first < hi


def test_cycle_axes_have_whole_number_ticks(rate_dir: Path, aging_dir: Path) -> None:
    for root in (rate_dir, aging_dir):
        fig = report_figure(analyze(root))
        fig.canvas.draw()
        for ax in fig.get_axes():
            if ax.get_xlabel() == "Cycle":
                ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
                assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


def test_meaningless_panels_are_left_out(rate_dir: Path, aging_dir: Path) -> None:
    rate = _titles(report_figure(analyze(rate_dir)))
    assert any(t.startswith("Rate capability") for t in rate)
    assert not any(t.startswith("Capacity retention") for t in rate)  # a rate test
    aging = _titles(report_figure(analyze(aging_dir)))
    assert any(t.startswith("Capacity retention") for t in aging)
    assert not any(t.startswith("Rate capability") for t in aging)  # one rate: one bar
    # nothing drawn as an empty "no data" panel
    for fig in (report_figure(analyze(rate_dir)), report_figure(analyze(aging_dir))):
        for ax in fig.get_axes():
            assert ax.get_title() == "" or ax.get_lines() or ax.patches or ax.collections


def test_one_relaxation_point_is_no_panel(tmp_path: Path) -> None:
    w = write_cycling_run(tmp_path, [0.1], every_s=60.0, rest_s=600.0)
    titles = _titles(report_figure(analyze(w.root)))
    assert not any(t.startswith("Relaxation") for t in titles)


def _overlaps(a: object, b: object) -> bool:
    return bool(a.overlaps(b))  # type: ignore[attr-defined]


def test_compare_lays_out_cleanly_with_legends_off_the_data(
    rate_dir: Path, aging_dir: Path, tmp_path: Path
) -> None:
    runs = [analyze(rate_dir), analyze(aging_dir)]
    out = write_compare(runs, tmp_path / "c.png")  # a layout warning is an error here
    assert out.stat().st_size > 10_000
    fig = compare_figure(runs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.get_axes() if ax.get_legend()]
    assert legends
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for ax in fig.get_axes():
            assert not _overlaps(box, ax.get_window_extent(renderer)), ax.get_title()


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<svg"), (".pdf", b"%PDF"),
                                               (".png", b"\x89PNG")])  # fmt: skip
def test_report_and_compare_write_the_format_asked(
    rate_dir: Path, aging_dir: Path, tmp_path: Path, suffix: str, magic: bytes
) -> None:
    a = analyze(rate_dir)
    head = write_report(a, tmp_path / f"r{suffix}").read_bytes()[:400]
    assert magic in head
    head = write_compare([a, analyze(aging_dir)], tmp_path / f"c{suffix}").read_bytes()[:400]
    assert magic in head
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(rate_dir), "--out", str(tmp_path / f"x{suffix}")])
    assert res.exit_code == 0, res.output
    assert magic in (tmp_path / f"x{suffix}").read_bytes()[:400]
    res = runner.invoke(app, ["compare", str(rate_dir), str(aging_dir), "--out",
                              str(tmp_path / f"y{suffix}")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert magic in (tmp_path / f"y{suffix}").read_bytes()[:400]
