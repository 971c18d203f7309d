"""A run page's first answers are encoded once per state of the run's files and kept on
disk: a restarted server sends them without reading a record; a changed file makes a new
answer; the cycle table goes out exactly as stored."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.web.bodies import Bodies, Encoded
from labrig.orchestrator.web.pagedata import cycle_columns, cycles_plot, first_events, whole_series
from labrig.orchestrator.web.rundata import RunNotFound, RunsDir
from labrig.orchestrator.web.series import SeriesCache
from labrig.orchestrator.web.source import BaseSource

RUN = "20260101-000000-pages"
N = 50_000


def _chunk(k: int) -> pa.Table:
    i = np.arange(k * N, (k + 1) * N)
    return pa.table({"time_s": i * 1.0, "voltage_V": 3.0 + 0.4 * np.sin(i / 900.0),
                     "current_A": np.cos(i / 300.0) * 1e-3, "temperature_C": np.full(N, 25.0),
                     "record_seq": i})  # fmt: skip


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs" / RUN
    (root / "data").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"run_id": RUN, "created": "2026-01-01"}))
    for k in range(2):
        pq.write_table(_chunk(k), root / "data" / f"part-{k:05d}.parquet")
    # values a 6-significant-digit rounding would change
    pq.write_table(pa.table({"cycle": [1, 2, 3],
                             "discharge_capacity_mAh": [1.23456789012, 1.2299999991, None],
                             "charge_capacity_mAh": [1.2400000001, 1.23, 1.2],
                             "coulombic_efficiency_pct": [99.5612345678, float("nan"), 99.9]}),
                   root / "cycles.parquet")  # fmt: skip
    lines = [{"seq": s, "kind": "step_started", "wall_time": 1.0e9 + s, "run_time_s": s,
              "data": {"step": f"s{s}"}} for s in range(1, 251)]  # fmt: skip
    (root / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    return tmp_path / "runs"


class Source(BaseSource):
    """The file side of a data source (no MQTT, no daemon)."""

    def __init__(self, runs: Path, cache: Path) -> None:
        super().__init__(runs, runs.parent / "work", mqtt=None, cache_dir=cache)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_restarted_server_sends_the_run_page_answers_without_reading_a_record(
    runs: Path, tmp_path: Path
) -> None:
    before = _listing(runs)
    first = Source(runs, tmp_path / "cache")
    enc = whole_series(first, RUN, 1200)
    again = whole_series(first, RUN, 1200)
    assert again is enc and first.bodies.made == 1
    data = json.loads(enc.body)
    assert data == first.series.window(RUN, None, None, 1200) | {"live": []}
    assert data["stored"] == 2 * N and data["decimated"] and list(data)[-1] == "live"
    assert gzip.decompress(enc.gz) == enc.body
    cycles = cycles_plot(first, RUN)
    events = first_events(first, RUN, 100, [])
    assert cycles is not None and events is not None
    restarted = Source(runs, tmp_path / "cache")
    assert whole_series(restarted, RUN, 1200).body == enc.body
    kept = cycles_plot(restarted, RUN)
    assert kept is not None and kept.body == cycles.body
    assert restarted.bodies.made == 0 and restarted.series.summaries_made == 0
    assert not restarted.series._runs  # no chunk, not even a summary, was read
    assert _listing(runs) == before  # nothing written into the run


def test_a_changed_file_makes_a_new_answer(runs: Path, tmp_path: Path) -> None:
    src = Source(runs, tmp_path / "cache")
    old = json.loads(whole_series(src, RUN, 1000).body)
    pq.write_table(_chunk(2), runs / RUN / "data" / "part-00002.parquet")
    new = json.loads(whole_series(src, RUN, 1000).body)
    assert (old["stored"], new["stored"]) == (2 * N, 3 * N)
    before = first_events(src, RUN, 100, [])
    with open(runs / RUN / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"seq": 251, "kind": "run_ended", "wall_time": 2e9,
                             "run_time_s": 3e5, "data": {}}) + "\n")  # fmt: skip
    after = first_events(src, RUN, 100, [])
    assert before is not None and after is not None
    assert json.loads(after.body)["events"][-1]["seq"] == 251
    assert json.loads(before.body)["events"][-1]["seq"] == 250
    table = runs / RUN / "cycles.parquet"
    was = cycles_plot(src, RUN)
    pq.write_table(pa.table({"cycle": [1], "discharge_capacity_mAh": [2.0]}), table)
    os.utime(table, ns=(1, 1))  # a different time, whatever the clock's resolution
    now = cycles_plot(src, RUN)
    assert was is not None and now is not None
    assert json.loads(now.body)["columns"]["discharge_capacity_mAh"] == [2.0]


def test_the_cycle_table_goes_out_exactly_as_stored(runs: Path, tmp_path: Path) -> None:
    src = Source(runs, tmp_path / "cache")
    enc = cycles_plot(src, RUN)
    assert enc is not None
    cols = json.loads(enc.body)["columns"]
    rows = pq.read_table(runs / RUN / "cycles.parquet").to_pylist()
    assert cols["cycle"] == [1, 2, 3]
    assert cols["discharge_capacity_mAh"] == [1.23456789012, 1.2299999991, None]
    assert cols["charge_capacity_mAh"] == [r["charge_capacity_mAh"] for r in rows]
    assert cols["coulombic_efficiency_pct"] == [99.5612345678, None, 99.9]  # NaN: null
    assert cols["discharge_capacity_mAh_g"] == [None, None, None]  # not in the table
    assert cycle_columns([])["count"] == 0


def test_live_readings_are_added_to_a_kept_answer(tmp_path: Path) -> None:
    enc = Encoded.of({"t": list(range(3000)), "live": []})
    live = b"[[1.5,3.7,0.001,25.0]]"
    for gzip_ok in (True, False):
        body, zipped = enc.with_live(live, gzip_ok)
        assert zipped is gzip_ok
        text = gzip.decompress(body) if zipped else body
        assert json.loads(text) == {"t": list(range(3000)), "live": [[1.5, 3.7, 0.001, 25.0]]}
    assert enc.with_live(b"[]", True) == (enc.gz, True)
    small = Encoded.of({"live": []})
    assert small.pick(True) == (small.body, False)  # too small to be worth gzip


def test_answers_kept_on_disk_survive_a_damaged_file(tmp_path: Path) -> None:
    bodies = Bodies(tmp_path / "c")
    bodies.put(RUN, "cycles", "v1", Encoded.of({"columns": {}}), keep=True)
    path = tmp_path / "c" / RUN / "pages" / "cycles-v1.json.gz"
    assert Bodies(tmp_path / "c").get(RUN, "cycles", "v1") is not None
    path.write_bytes(b"{}\nnot gzip")
    assert Bodies(tmp_path / "c").get(RUN, "cycles", "v1") is None
    bodies.put(RUN, "cycles", "v2", Encoded.of({"columns": {}}), keep=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["cycles-v2.json.gz"]


def test_unknown_runs_are_refused(runs: Path, tmp_path: Path) -> None:
    src = Source(runs, tmp_path / "cache")
    with pytest.raises(RunNotFound):
        whole_series(src, "../etc", 1000)
    assert isinstance(src.runs, RunsDir) and isinstance(src.series, SeriesCache)
