"""Reports, comparison, BDF export and the CLI on whole run directories, including broken
and partial ones."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.protocols.analysis import (
    BDF_COLUMNS,
    RunDirError,
    analyze,
    export_bdf,
    load_run,
    report_figure,
    write_compare,
    write_report,
)
from labrig.protocols.analysis.report import group_key, image_stats
from tests.unit.analysis.synth import write_cycling_run

RATES = [0.1] * 3 + [0.25] * 3 + [0.5] * 3 + [1.0] * 5 + [2.0] * 5 + [0.25] * 12


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = write_cycling_run(tmp_path_factory.mktemp("full"), RATES, every_s=30.0,
                          eis_cycles=(1, 25), chunk_rows=20_000,
                          meta_extra={"sample_id": "NCM83-350C", "cell_id": "A1"})  # fmt: skip
    return w.root


def test_report_png_has_the_panels_and_is_not_blank(full_run: Path, tmp_path: Path) -> None:
    a = analyze(full_run)
    fig = report_figure(a)
    titles = [ax.get_title() for ax in fig.get_axes() if ax.get_title()]
    for expected in ("Voltage profiles", "Capacity and Coulomb efficiency", "Capacity retention",
                     "Rate capability", "Differential capacity",
                     "Impedance (Nyquist)"):  # fmt: skip
        assert any(t.startswith(expected) for t in titles), (expected, titles)
    for ax in fig.get_axes():
        if ax.get_title() and not ax.get_title().startswith("Relax"):
            assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    out = write_report(a, tmp_path / "r.png")
    w, h, std = image_stats(out.read_bytes())
    assert w >= 1200 and h >= 1200
    assert std > 0.05  # white page with plots, not a blank image
    # the Nyquist panel shows fitted lines for both spectra
    nyq = next(ax for ax in fig.get_axes() if ax.get_title().startswith("Impedance"))
    assert len(nyq.get_lines()) == 4


def test_report_html_embeds_figures_and_numbers(full_run: Path, tmp_path: Path) -> None:
    a = analyze(
        full_run,
    )
    out = write_report(a, tmp_path / "r.html")
    text = out.read_text()
    assert text.count("data:image/png;base64,") >= 6
    assert "initial CE" in text and "85 %" in text
    assert "Rate capability" in text and "R2" in text
    assert "±" in text  # fits carry uncertainties


def test_compare_groups_by_sample_and_anneal(tmp_path: Path) -> None:
    runs = []
    for k, sample in enumerate(("NCM-300C", "NCM-300C", "NCM-400C")):
        w = write_cycling_run(tmp_path / str(k), [1.0] * 8, every_s=120.0, rest_s=120.0,
                              run_id=f"r{k}", seed=k,
                              meta_extra={"sample_id": sample, "cell_id": f"c{k}"})  # fmt: skip
        runs.append(analyze(w.root))
    assert [group_key(a, "anneal") for a in runs] == ["300 °C", "300 °C", "400 °C"]
    assert [group_key(a, "sample") for a in runs] == ["NCM-300C", "NCM-300C", "NCM-400C"]
    assert [group_key(a, "label") for a in runs] == ["c0", "c1", "c2"]
    png = write_compare(runs, tmp_path / "c.png", by="anneal")
    assert image_stats(png.read_bytes())[2] > 0.05
    html = write_compare(runs, tmp_path / "c.html", by="sample").read_text()
    assert "NCM-400C" in html and "data:image/png" in html


def test_bdf_export_csv_and_parquet(full_run: Path, tmp_path: Path) -> None:
    run = load_run(full_run)
    csv_path = export_bdf(full_run, tmp_path / "x.bdf.csv", "csv")
    df = pd.read_csv(csv_path)
    assert list(df.columns) == list(BDF_COLUMNS)
    assert len(df) == len(run.series)
    np.testing.assert_allclose(df["Current / A"], run.series["current_A"])
    assert (df.loc[df["Current / A"] > 0, "Charging Capacity / Ah"].diff().dropna() >= -1e-12).any()
    steps = df["Step Count / 1"].to_numpy()
    assert steps[0] == 1 and np.all(np.diff(steps) >= 0)
    assert steps[-1] == len(RATES) * 4  # charge, rest, discharge, rest per cycle
    idx = df["Step Index / 1"].to_numpy()
    new_step = np.diff(steps, prepend=0) > 0
    assert (idx[new_step] == 1).all() and (np.diff(idx)[~new_step[1:]] == 1).all()
    side = json.loads(Path(str(csv_path) + ".metadata.json").read_text())
    assert "positive while charging" in side["conventions"]
    pq_path = export_bdf(full_run, None, "parquet")
    table = pq.read_table(pq_path)
    assert table.num_rows == len(run.series)
    assert b"bdf" in (table.schema.metadata or {})
    np.testing.assert_array_equal(table.column("Step Count / 1").to_numpy(), steps)


def test_partial_run_still_going(tmp_path: Path) -> None:
    w = write_cycling_run(tmp_path, [0.5] * 4, every_s=60.0, finish=False)
    # cut the last cycle short: drop the final chunk's tail by rewriting it
    a = analyze(w.root)
    assert any("cycles.parquet is missing" in p for p in a.problems)
    assert any("still going" in p for p in a.problems)
    assert len(a.cycles) == 4
    np.testing.assert_allclose(a.cycles["discharge_capacity_mAh"], w.discharge_mAh, rtol=1e-9)
    write_report(a, tmp_path / "r.png")


def test_crashed_run_is_analysed_with_a_list_of_problems(tmp_path: Path) -> None:
    w = write_cycling_run(tmp_path, [1.0] * 6, every_s=30.0, chunk_rows=300, finish=False)
    data = w.root / "data"
    parts = sorted(data.glob("part-*.parquet"))
    assert len(parts) >= 3
    parts[1].write_bytes(b"not parquet at all")
    (data / "part-99999.parquet.tmp").write_bytes(b"half")
    with open(w.root / "events.jsonl", "a") as fh:
        fh.write('{"kind": "step_sta')  # cut short by the crash
    (w.root / "eis" / "cycle_00003.parquet").write_bytes(b"garbage")
    (w.root / "run.json").unlink()
    a = analyze(w.root)
    text = "\n".join(a.problems)
    for expected in ("part-00001.parquet is unreadable", "half-written chunk",
                     "run.json is missing",
                     "eis/cycle_00003.parquet is unreadable", "events.jsonl: 1 line"):  # fmt: skip
        assert expected in text, text
    assert len(a.cycles) >= 4
    assert a.cycles["discharge_capacity_mAh_g"].isna().all()  # no mass without run.json
    write_report(a, tmp_path / "crashed.html")
    write_report(a, tmp_path / "crashed.png")


def test_empty_and_non_run_directories(tmp_path: Path) -> None:
    with pytest.raises(RunDirError):
        load_run(tmp_path / "nope")
    with pytest.raises(RunDirError, match="not a run directory"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text('{"run_id": "x", "state": "running"}')
    a = analyze(tmp_path)
    assert a.cycles.empty
    assert any("data/ is missing" in p for p in a.problems)
    out = write_report(a, tmp_path / "r.png")
    assert out.stat().st_size > 1000


runner = CliRunner()


def test_cli_analyze_report_export_compare(full_run: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["analyze", str(full_run), "--json", "--no-eis"])
    assert res.exit_code == 0, res.output
    k = json.loads(res.stdout)
    assert k["initial_ce_pct"] == pytest.approx(85.0)
    assert k["first_discharge_capacity"] == pytest.approx(200.0)
    assert [r["c_rate"] for r in k["rates"]] == [0.1, 0.25, 0.5, 1.0, 2.0, 0.25]
    res = runner.invoke(app, ["analyze", str(full_run), "--no-eis"])
    assert res.exit_code == 0 and "initial CE" in res.output
    out = tmp_path / "rep.png"
    res = runner.invoke(app, ["report", str(full_run), "--format", "png", "--out", str(out),
                              "--cycles", "1,2,25"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert image_stats(out.read_bytes())[2] > 0.05
    res = runner.invoke(app, ["export", str(full_run), "--format", "bdf-parquet", "--out",
                              str(tmp_path / "e.bdf.parquet")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["compare", str(full_run), str(full_run), "--by", "sample", "--out",
                              str(tmp_path / "cmp.png")])  # fmt: skip
    assert res.exit_code == 0, res.output


def test_cli_bad_input_is_a_clear_error(tmp_path: Path, full_run: Path) -> None:
    res = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a directory" in res.output
    res = runner.invoke(app, ["report", str(full_run), "--format", "docx"])
    assert res.exit_code == 2 and "--format" in res.output
    res = runner.invoke(app, ["report", str(full_run), "--cycles", "1,x"])
    assert res.exit_code == 2 and "--cycles" in res.output
    res = runner.invoke(app, ["export", str(full_run), "--format", "xlsx"])
    assert res.exit_code == 2 and "bdf-csv" in res.output
    res = runner.invoke(app, ["compare", str(full_run), "--by", "colour"])
    assert res.exit_code == 2 and "--by" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run.json").write_text("{}")
    res = runner.invoke(app, ["export", str(empty)])
    assert res.exit_code == 2 and "no data" in res.output


def test_image_stats_sees_blank() -> None:
    from labrig.protocols.analysis.plots import new_figure

    fig = new_figure(2, 2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert math.isclose(image_stats(buf.getvalue())[2], 0.0, abs_tol=1e-9)
