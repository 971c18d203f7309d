"""The BDF export checked by the Battery Data Alliance's own package (``batterydf``,
imported as ``bdf``): every column a BDF label, the required ones present, Unix time."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import bdf  # batterydf, the Battery Data Alliance's package (dev extra)
import numpy as np
import pandas as pd
import pytest
from bdf.normalize import OPTIONAL, REQUIRED

from labrig.protocols.analysis import BDF_COLUMNS, export_bdf, load_run
from tests.unit.analysis.synth import write_cycling_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cycling_run(tmp_path_factory.mktemp("bdf"), [0.5, 0.5, 1.0], every_s=60.0).root


def _report(df: pd.DataFrame) -> dict[str, object]:
    # validate_df warns on legacy labels; the suite turns warnings into errors
    rep: dict[str, object] = bdf.validate_df(df, report=False, raise_on_error=True)
    return rep


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_is_valid_bdf_with_preferred_labels(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    path = export_bdf(run_dir, tmp_path / f"x.bdf.{fmt}", fmt)
    df = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    rep = _report(df)
    assert rep["ok"] and rep["missing"] == []
    assert rep["extras"] == [], "columns that are not BDF labels"
    assert rep["legacy_labels"] == []
    allowed = set(REQUIRED) | set(OPTIONAL)
    assert set(df.columns) <= allowed
    assert set(BDF_COLUMNS) == set(df.columns)


def test_unix_time_is_the_run_start_plus_test_time(run_dir: Path, tmp_path: Path) -> None:
    path = export_bdf(run_dir, tmp_path / "u.bdf.csv", "csv")
    df = pd.read_csv(path)
    assert "Unix Time / s" in df.columns
    meta = json.loads((run_dir / "run.json").read_text())
    start = datetime.fromisoformat(meta["created"]).timestamp()
    np.testing.assert_allclose(df["Unix Time / s"] - df["Test Time / s"], start, atol=1e-3)
    assert len(df) == len(load_run(run_dir).series)
    side = json.loads(Path(str(path) + ".metadata.json").read_text())
    assert "Surface Temperature T1 / degC" in side["columns"]
