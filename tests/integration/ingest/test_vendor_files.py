"""Real vendor files (tests/data/ingest, see its README): labrig's import against each
format's reference reader. Capacities per cycle agree within 0.1 %."""

from __future__ import annotations

import gzip
import importlib.util
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.importer import import_file
from labrig.protocols.analysis import analyze, load_run
from labrig.protocols.ingest.neware import _import_fastnda

DATA = Path(__file__).resolve().parents[2] / "data" / "ingest"
RTOL = 1e-3  # 0.1 %


def _caps(run: Path) -> tuple[list[float], list[float]]:
    """labrig's charge and discharge capacities (Ah) per cycle, zeros dropped."""
    c = pq.read_table(run / "cycles.parquet").to_pandas()
    return _nonzero(c["charge_capacity_mAh"] * 1e-3), _nonzero(c["discharge_capacity_mAh"] * 1e-3)


def _nonzero(values: pd.Series | list[float], floor: float = 1e-9) -> list[float]:
    return [float(v) for v in values if np.isfinite(v) and abs(v) > floor]


def _same(ours: list[float], ref: list[float]) -> None:
    assert len(ours) == len(ref), (ours, ref)
    np.testing.assert_allclose(ours, ref, rtol=RTOL)


def _per_step_sum(df: pd.DataFrame, cycle: str, step: str, cap: str) -> pd.Series:
    """Sum over a cycle's steps of each step's final (largest) counter value."""
    seg = (df[step] != df[step].shift()) | (df[cycle] != df[cycle].shift())
    per_step = df.assign(_seg=seg.cumsum()).groupby("_seg").agg(c=(cycle, "first"), q=(cap, "max"))
    return per_step.groupby("c", sort=False)["q"].sum()


def test_maccor_export_against_an_independent_parse(tmp_path: Path) -> None:
    src = DATA / "maccor" / "xTESLADIAG_000038con.078"
    run = import_file(src, tmp_path)
    # the reference: pandas' Python parser, MACCOR's own per-step Amp-hr by state
    df = pd.read_csv(src, sep="\t", skiprows=1, engine="python", usecols=range(11))
    ch = _per_step_sum(df[df["State"] == "C"], "Cyc#", "Step", "Amp-hr")
    dis = _per_step_sum(df[df["State"] == "D"], "Cyc#", "Step", "Amp-hr")
    ours_ch, ours_dis = _caps(run)
    _same(ours_ch, _nonzero(ch))
    _same(ours_dis, _nonzero(dis))
    cyc = pq.read_table(run / "cycles.parquet").to_pandas()
    assert cyc["cycle"].tolist() == list(range(1, 9))
    assert cyc["source_cycle"].tolist() == list(range(0, 8))  # MACCOR counts from 0
    data = load_run(run).series
    on_dis = data.kind == 2
    assert np.all(data["current_A"][on_dis] < 0) and np.all(data["current_A"][data.kind == 1] > 0)


def test_maccor_unsigned_amps_and_day_times(tmp_path: Path) -> None:
    src = DATA / "maccor" / "maccor_001_first700.txt"
    run = load_run(import_file(src, tmp_path))
    raw = pd.read_csv(src, sep="\t", skiprows=3, usecols=range(10), engine="python")
    i = run.series["current_A"]
    dis = (raw["State"] == "D").to_numpy()
    assert (raw["Amps"][dis] > 0).all()  # the export writes them unsigned
    np.testing.assert_allclose(i[dis], -raw["Amps"][dis].to_numpy())
    t = run.series["time_s"]
    assert t[0] == 0 and np.all(np.diff(t) >= 0)
    days = raw["TestTime"].str.extract(r"(\d+)d (\d+):(\d+):([\d.]+)").astype(float)
    ref = days[0] * 86400 + days[1] * 3600 + days[2] * 60 + days[3]
    np.testing.assert_allclose(t, ref.to_numpy(), atol=1e-6)
    assert run.meta["imported"]["file_says"]["procedure"] == "M50_Validation.000"


def test_maccor_eis_export(tmp_path: Path) -> None:
    run = load_run(import_file(DATA / "maccor" / "maccor_test_file_4267-66-6519.EDA0001.041",
                               tmp_path))  # fmt: skip
    (spec,) = run.spectra
    assert spec.frequency_Hz.size == 60 and spec.frequency_Hz[0] > 9e5
    assert np.median(spec.z_imag_ohm[:10]) < 0  # as measured: negative for the arc


def test_biologic_mpr_gcpl_against_galvani(tmp_path: Path) -> None:
    from galvani import BioLogic

    src = DATA / "biologic" / "250116_kigr_gen6_01_02_GCPL_CD8.mpr"
    run = import_file(src, tmp_path, {"sample_id": "kigr"})
    with open(src, "rb") as fh:
        ref = pd.DataFrame(BioLogic.MPRfile(fh).data)
    # galvani's own per-half-cycle counter (a column our reader does not use)
    q = ref.groupby("half cycle")["Q charge/discharge/mA.h"].agg(
        lambda s: s.iloc[np.argmax(np.abs(s.to_numpy()))]
    )
    ours_ch, ours_dis = _caps(run)
    _same(ours_ch, _nonzero(q[q > 0] * 1e-3))
    _same(ours_dis, _nonzero(-q[q < 0] * 1e-3))
    cyc = pq.read_table(run / "cycles.parquet").to_pandas()
    assert cyc[["source_cycle", "source_cycle_last"]].to_numpy().tolist() == [
        [0, 1],
        [2, 3],
        [4, 5],
    ]


def test_biologic_mb_and_mpt_read(tmp_path: Path) -> None:
    mb = load_run(import_file(DATA / "biologic" / "MB-1.mpr", tmp_path))
    assert len(mb.series) == 13 and mb.meta["imported"]["reader"] == "galvani"
    mpt = load_run(import_file(DATA / "biologic" / "exampleDataBioLogic.mpt", tmp_path))
    (spec,) = mpt.spectra
    raw = pd.read_csv(DATA / "biologic" / "exampleDataBioLogic.mpt", sep="\t", skiprows=60,
                      encoding="latin-1")  # fmt: skip
    np.testing.assert_allclose(spec.frequency_Hz, raw["freq/Hz"])
    np.testing.assert_allclose(spec.z_imag_ohm, -raw["-Im(Z)/Ohm"])


@pytest.mark.parametrize("name", ["nw4-120-6-1-36.ndax", "new_nda_file.nda"])
def test_neware_against_fastnda_and_newarenda(name: str, tmp_path: Path) -> None:
    import NewareNDA

    fastnda = _import_fastnda()  # never through `import fastnda`: it patches zlib process-wide

    src = DATA / "neware" / name
    run = import_file(src, tmp_path)
    ours_ch, ours_dis = _caps(run)
    ref = fastnda.read(str(src)).to_pandas()
    ref["q"] = ref["capacity_mAh"].abs() * 1e-3
    ch = _per_step_sum(ref[ref["current_mA"] > 0], "cycle_count", "step_count", "q")
    dis = _per_step_sum(ref[ref["current_mA"] < 0], "cycle_count", "step_count", "q")
    _same(ours_ch, _nonzero(ch))
    _same(ours_dis, _nonzero(dis))
    with warnings.catch_warnings():  # NewareNDA's own use of a deprecated pandas keyword
        warnings.simplefilter("ignore")
        nd = NewareNDA.read(str(src))  # a second, independent reading
    nch = _per_step_sum(nd, "Cycle", "Step", "Charge_Capacity(mAh)") * 1e-3
    ndis = _per_step_sum(nd, "Cycle", "Step", "Discharge_Capacity(mAh)") * 1e-3
    _same(ours_ch, _nonzero(nch))
    _same(ours_dis, _nonzero(ndis))


needs_mdbtools = pytest.mark.skipif(
    shutil.which("mdb-export") is None,
    reason="Arbin .res needs mdb-export: install the Debian package mdbtools",
)


needs_cellpy = pytest.mark.skipif(
    importlib.util.find_spec("cellpy") is None,
    reason="cross-check against cellpy: cellpy is kept out of the dev extra (heavy); "
    "pip install -e '.[bench]' to run it",
)


@needs_mdbtools
def test_arbin_res_against_mdb(tmp_path: Path) -> None:
    import subprocess
    from io import StringIO

    src = DATA / "arbin" / "20160805_test001_45_cc_01.res"
    run = import_file(src, tmp_path)
    raw = subprocess.run(["mdb-export", str(src), "Channel_Normal_Table"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    ref = pd.read_csv(StringIO(raw), engine="python")
    per = ref.groupby("Cycle_Index")[["Charge_Capacity", "Discharge_Capacity"]].max()
    ours_ch, ours_dis = _caps(run)
    _same(ours_ch, _nonzero(per["Charge_Capacity"]))
    _same(ours_dis, _nonzero(per["Discharge_Capacity"]))
    cyc = pq.read_table(run / "cycles.parquet").to_pandas()
    # the half cell starts with a lithiation (a discharge): cycle 1 is that alone
    assert cyc.loc[1, ["source_cycle", "source_cycle_last"]].tolist() == [1, 2]
    meta = load_run(run).meta
    assert meta["cell"]["cam_mass_mg"] == pytest.approx(0.852838, rel=1e-5)  # Global_Table


@needs_mdbtools
@needs_cellpy
def test_arbin_res_against_cellpy(tmp_path: Path) -> None:
    """cellpy's own Arbin reader and summary, on the file from cellpy's test data."""
    import cellpy

    src = DATA / "arbin" / "20160805_test001_45_cc_01.res"
    ours_ch, ours_dis = _caps(import_file(src, tmp_path))
    with warnings.catch_warnings():  # cellpy warns of its optional ODBC loader
        warnings.simplefilter("ignore")
        c = cellpy.get(str(src), instrument="arbin_res", custom_log_dir=str(tmp_path))
    summ = c.data.summary
    assert len(summ) == 18
    _same(ours_ch, _nonzero(summ["charge_capacity"]))  # cellpy keeps the raw unit, Ah
    _same(ours_dis, _nonzero(summ["discharge_capacity"]))


@needs_mdbtools
def test_arbin_mits7_schema(tmp_path: Path) -> None:
    res = tmp_path / "mits7-0.res"
    with gzip.open(DATA / "arbin" / "mits7-0.res.gz") as f, open(res, "wb") as g:
        shutil.copyfileobj(f, g)
    run = load_run(import_file(res, tmp_path / "out"))
    assert len(run.series) == 8
    assert run.meta["imported"]["file_says"]["test_name"] == "kigr_pouch1-01-001"


def test_bdf_csv_from_the_bdf_repository(tmp_path: Path) -> None:
    src = DATA / "bdf" / "SINTEF__LiGrR2032__2024-04-30__25degC__Landt.bdf.csv"
    run = import_file(src, tmp_path)
    ref = pd.read_csv(src)
    ref["cyc"] = 0
    ch = _per_step_sum(ref, "cyc", "step_index", "charging_capacity_ah")
    dis = _per_step_sum(ref, "cyc", "step_index", "discharging_capacity_ah")
    ours_ch, ours_dis = _caps(run)
    assert sum(ours_ch) == pytest.approx(float(ch.sum()), rel=RTOL)
    assert sum(ours_dis) == pytest.approx(float(dis.sum()), rel=RTOL)
    a = analyze(run)
    assert a.key_numbers()["cycles_complete"] >= 1


def test_maccor_mixed_and_bad_test_times(tmp_path: Path) -> None:
    """Times without a day part next to ones with it are read alike; a value that is no
    time stops the import at its line."""
    from labrig.protocols.ingest import IngestError, read_vendor_file

    src = DATA / "maccor" / "maccor_001_first700.txt"
    lines = src.read_text(encoding="latin-1").splitlines(keepends=True)
    mixed = lines[:4] + [ln.replace("  0d ", "", 1) if k % 2 else ln
                         for k, ln in enumerate(lines[4:])]  # fmt: skip
    (tmp_path / "mixed.txt").write_text("".join(mixed), encoding="latin-1")
    ours = read_vendor_file(tmp_path / "mixed.txt").time_s
    np.testing.assert_allclose(ours, read_vendor_file(src).time_s, atol=1e-9)
    cells = lines[9].split("\t")
    cells[3] = "soon"
    (tmp_path / "bad.txt").write_text("".join([*lines[:9], "\t".join(cells), *lines[10:]]),
                                      encoding="latin-1")  # fmt: skip
    with pytest.raises(IngestError, match="line 10: test time"):
        read_vendor_file(tmp_path / "bad.txt")


def test_reading_neware_leaves_the_standard_zlib_in_place(tmp_path: Path) -> None:
    """fastnda assigns isal's functions to zlib at import; labrig keeps the stdlib's, so
    code elsewhere that catches ``zlib.error`` (the web cache) still sees it."""
    import zlib

    before = zlib.decompress, zlib.decompressobj
    import_file(DATA / "neware" / "nw4-120-6-1-36.ndax", tmp_path)
    assert (zlib.decompress, zlib.decompressobj) == before
    with pytest.raises(zlib.error):
        zlib.decompress(b"\x1f\x8b damaged", 31)
