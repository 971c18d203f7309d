"""``labrig import`` and vendor files given straight to analyze/report/compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.protocols.analysis import analyze, load_run
from labrig.protocols.analysis.groups import group_cycles
from labrig.protocols.analysis.report import image_stats, write_compare
from tests.unit.analysis.synth import write_cycling_run

DATA = Path(__file__).resolve().parents[2] / "data" / "ingest"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABRIG_CACHE_DIR", str(tmp_path / "cache"))


def _bad(tmp_path: Path, path: Path, *cmd: str) -> str:
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [*cmd, str(path), "--out", str(out)])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error: ") and str(path) in err and "\n" not in err, err
    assert "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("run.json"))
    return err


def test_bad_input_exits_2_naming_the_file(tmp_path: Path) -> None:
    odd = tmp_path / "notes.docx"
    odd.write_bytes(b"PK\x03\x04 not a cycler file")
    assert "unknown file type '.docx'" in _bad(tmp_path, odd, "import")
    mpr = (DATA / "biologic" / "250116_kigr_gen6_01_02_GCPL_CD8.mpr").read_bytes()
    cut = tmp_path / "cut.mpr"
    cut.write_bytes(mpr[: len(mpr) // 2])
    assert "truncated" in _bad(tmp_path, cut, "import")
    text = tmp_path / "shopping.txt"
    text.write_text("milk\teggs\nbread\tbutter\n" * 20)
    assert "MACCOR" in _bad(tmp_path, text, "import")
    for cmd in ("analyze", "report"):  # the same, straight to the analysis
        res = CliRunner().invoke(app, [cmd, str(cut)])
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert res.stderr.strip().startswith(f"error: {cut}")


def test_import_twice_is_refused_and_options_reach_run_json(tmp_path: Path) -> None:
    src = DATA / "neware" / "nw4-120-6-1-36.ndax"
    args = ["import", str(src), "--out", str(tmp_path / "runs"), "--cell", "c7",
            "--sample", "NCM-A", "--mass", "12.5"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    meta = load_run(run).meta
    assert meta["cell"] == {"cell_id": "c7", "sample_id": "NCM-A", "cam_mass_mg": 12.5}
    imp = meta["imported"]
    assert imp["reader"] == "fastnda" and imp["vendor_cycle_column"] == "cycle_count"
    assert len(imp["sha256"]) == 64 and imp["source_file"].endswith(src.name)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "already imported" in res.stderr


def test_report_on_a_peis_file_shows_nyquist_and_fit(tmp_path: Path) -> None:
    src = DATA / "biologic" / "PEIS-0.mpr"
    png = tmp_path / "peis.png"
    res = CliRunner().invoke(app, ["report", str(src), "--format", "png", "--out", str(png)])
    assert res.exit_code == 0, res.output
    w, _h, spread = image_stats(png.read_bytes())
    assert w > 800 and spread > 0.05
    a = analyze(next((tmp_path / "cache").rglob("run.json")).parent)
    (fit,) = a.eis
    assert fit.ok and fit.rel_rms_pct < 10


def test_analyze_caches_by_checksum(tmp_path: Path) -> None:
    src = DATA / "maccor" / "xTESLADIAG_000038con.078"
    for _ in range(2):
        res = CliRunner().invoke(app, ["analyze", str(src), "--json", "--no-eis"])
        assert res.exit_code == 0, res.output
        assert '"cycles_complete": 8' in res.stdout
    assert len(list((tmp_path / "cache").rglob("run.json"))) == 1


def test_labrig_bdf_export_round_trips(tmp_path: Path) -> None:
    w = write_cycling_run(tmp_path / "orig", [0.1, 0.1, 0.5, 1.0], every_s=60.0,
                          meta_extra={"sample_id": "rt"})  # fmt: skip
    bdf = tmp_path / "x.bdf.csv"
    res = CliRunner().invoke(app, ["export", str(w.root), "--format", "bdf-csv", "--out", str(bdf)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["import", str(bdf), "--out", str(tmp_path / "back")])
    assert res.exit_code == 0, res.output
    (back,) = (tmp_path / "back").iterdir()
    a, b = analyze(w.root), analyze(back)
    for col in ("charge_capacity_mAh", "discharge_capacity_mAh", "discharge_capacity_mAh_g",
                "coulombic_efficiency_pct", "discharge_energy_mWh"):  # fmt: skip
        np.testing.assert_allclose(b.cycles[col], a.cycles[col], rtol=1e-9)
    assert b.run.cell["sample_id"] == "rt"  # from the export's sidecar
    orig, again = load_run(w.root).series, load_run(back).series
    np.testing.assert_array_equal(again["cycle"], orig["cycle"])
    np.testing.assert_array_equal(again.kind, orig.kind)
    cyc = pq.read_table(back / "cycles.parquet").to_pandas()
    assert cyc["source_cycle"].tolist() == [1, 2, 3, 4]


def test_compare_groups_replicates_with_mean_and_sd(tmp_path: Path) -> None:
    runs, groups = [], []
    for k, (sample, scale) in enumerate([("A", 1.0), ("A", 0.96), ("A", 1.04), ("B", 0.8)]):
        from tests.unit.analysis.synth import SynthCell

        cell = SynthCell(q0_mAh_g=200.0 * scale)
        w = write_cycling_run(tmp_path / str(k), [0.5] * 6, cell=cell, every_s=120.0,
                              rest_s=120.0, run_id=f"r{k}", seed=k,
                              meta_extra={"sample_id": sample, "cell_id": f"c{k}"})  # fmt: skip
        runs.append(analyze(w.root))
        groups.append(sample)
    stats = group_cycles(runs, groups, "discharge_capacity_mAh_g")
    a3 = stats[(stats["group"] == "A") & (stats["cycle"] == 3)].iloc[0]
    vals = [r.cycles.set_index("cycle").loc[3, "discharge_capacity_mAh_g"] for r in runs[:3]]
    assert a3["n"] == 3
    assert a3["mean"] == pytest.approx(np.mean(vals)) and a3["std"] == pytest.approx(
        np.std(vals, ddof=1)
    )
    assert stats[stats["group"] == "B"]["std"].isna().all()
    png = write_compare(runs, tmp_path / "cmp.png", by="sample")
    assert image_stats(png.read_bytes())[2] > 0.05
    html = write_compare(runs, tmp_path / "cmp.html", by="sample").read_text()
    assert "mean and s.d." in html


def _eis_at(src: Path, dest: Path, start: str | None) -> Path:
    """A copy of the MACCOR EIS export with its start line set to ``start``."""
    lines = src.read_text(encoding="latin-1").splitlines(keepends=True)
    k = next(i for i, ln in enumerate(lines) if ln.startswith("Start Date:"))
    lines[k] = f"Start Date:  {start}\n" if start else "Line 6\n"
    dest.write_text("".join(lines), encoding="latin-1")
    return dest


def test_maccor_data_export_and_its_eis_exports_make_one_run(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    data = src / "cellA.078"
    data.write_bytes((DATA / "maccor" / "xTESLADIAG_000038con.078").read_bytes())
    eis = DATA / "maccor" / "maccor_test_file_4267-66-6519.EDA0001.041"
    # the data's first record is at 08/15/2019 16:37:02: 22:10 is test time 19,978 s, in
    # MACCOR's cycle 2 (15,057 .. 23,249 s), labrig's cycle 3
    _eis_at(eis, src / "cellA.EDA0001.078", "Thursday, August 15, 2019 Start Time:   22:10")
    _eis_at(eis, src / "cellA.EDA0002.078", "Friday, August 16, 2019 Start Time:   9:00")
    _eis_at(eis, src / "cellAB.EDA0001.078", None)  # another test's
    res = CliRunner().invoke(app, ["import", str(data), "--out", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "with 2 EIS export(s)" in res.stdout
    (run,) = (tmp_path / "runs").iterdir()
    loaded = load_run(run)
    files = loaded.meta["imported"]["eis_files"]
    assert [Path(f["source_file"]).name for f in files] == ["cellA.EDA0001.078",
                                                            "cellA.EDA0002.078"]  # fmt: skip
    assert all(len(f["sha256"]) == 64 and f["spectra"] == 1 for f in files)
    first, second = sorted(loaded.spectra, key=lambda s: s.meta["source_file"])
    assert first.cycle == 3 and first.meta["placed_by"] == "time"
    assert first.meta["source_time_s"] == pytest.approx(19978.0, abs=1.0)
    assert second.cycle == 8  # after the last record: the last cycle
    assert first.frequency_Hz.size == 60 and np.median(first.z_imag_ohm[:10]) < 0
    assert len(load_run(run).series) == 3873  # the data, whole


def test_data_and_eis_given_together_and_siblings_off(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes((DATA / "maccor" / "maccor_001_first700.txt").read_bytes())
    eis = _eis_at(DATA / "maccor" / "maccor_test_file_4267-66-6519.EDA0001.041",
                  tmp_path / "data_EIS.txt", None)  # fmt: skip
    out = tmp_path / "runs"
    res = CliRunner().invoke(app, ["import", str(data), "--no-siblings", "--out", str(out)])
    assert res.exit_code == 0, res.output
    (alone,) = out.iterdir()
    assert load_run(alone).spectra == [] and load_run(alone).meta["imported"]["eis_files"] == []
    res = CliRunner().invoke(app, ["import", str(data), str(eis), "--no-siblings",
                                   "--out", str(tmp_path / "together")])  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "together").iterdir()  # one run, not two
    (spec,) = load_run(run).spectra
    assert spec.cycle == 0 and spec.meta["placed_by"] == "none"  # no start time to place it
    assert len(load_run(run).series) == 700


def test_a_damaged_eis_sibling_stops_the_import_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "cellB.078"
    data.write_bytes((DATA / "maccor" / "xTESLADIAG_000038con.078").read_bytes())
    bad = tmp_path / "cellB.EDA0001.078"
    bad.write_text("MACCOR, INC.    AC Impedance Test\nFrequency Sweep: x\n", encoding="latin-1")
    err = _bad(tmp_path, data, "import")
    assert str(bad) in err and "Freq(Hz)" in err
    res = CliRunner().invoke(app, ["import", str(data), "--no-siblings",
                                   "--out", str(tmp_path / "ok")])  # fmt: skip
    assert res.exit_code == 0, res.output


def test_an_eis_export_beside_another_vendors_file_is_a_run_of_its_own(tmp_path: Path) -> None:
    mpr = tmp_path / "x.mpr"
    mpr.write_bytes((DATA / "biologic" / "MB-1.mpr").read_bytes())
    eis = _eis_at(DATA / "maccor" / "maccor_test_file_4267-66-6519.EDA0001.041",
                  tmp_path / "x_EIS.txt", None)  # fmt: skip
    res = CliRunner().invoke(app, ["import", str(mpr), str(eis), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    runs = sorted((tmp_path / "r").iterdir())
    assert len(runs) == 2
    assert sorted(len(load_run(r).spectra) for r in runs) == [0, 1]
