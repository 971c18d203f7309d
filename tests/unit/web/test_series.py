"""Plot windows from chunk summaries kept on disk: what is drawn is what the full records
would draw, a restarted server reads no record again, and nothing is written into a run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.web.rundata import RunsDir
from labrig.orchestrator.web.series import SUMMARY_BUCKETS, SeriesCache, decimate

RUN = "20260101-000000-test-run"
N = 60_000  # records per chunk
SPIKES = {12_345: 4.4, 75_000: 1.1, 170_001: 3.95}  # record index -> voltage


def _records(k: int) -> dict[str, np.ndarray]:
    i = np.arange(k * N, (k + 1) * N)
    v = 3.0 + 0.5 * np.sin(i / 3000.0)
    for at, value in SPIKES.items():
        if k * N <= at < (k + 1) * N:
            v[at - k * N] = value
    return {"time_s": i * 1.0, "voltage_V": v, "current_A": np.cos(i / 700.0) * 1e-3,
            "temperature_C": np.full(N, 25.0), "record_seq": i}  # fmt: skip


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    data = tmp_path / "runs" / RUN / "data"
    data.mkdir(parents=True)
    (data.parent / "run.json").write_text(json.dumps({"run_id": RUN, "created": "2026-01-01"}))
    for k in range(3):
        pq.write_table(pa.table(_records(k)), data / f"part-{k:05d}.parquet")
    return tmp_path / "runs"


def _full() -> dict[str, np.ndarray]:
    parts = [_records(k) for k in range(3)]
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_the_whole_run_is_drawn_from_summaries_that_outlive_a_restart(
    runs: Path, tmp_path: Path
) -> None:
    before = _listing(runs)
    cache = tmp_path / "cache"
    first = SeriesCache(RunsDir(runs), cache)
    w = first.window(RUN, None, None, 1200)
    assert first.summaries_made == 3
    assert w["stored"] == 3 * N and w["decimated"] and w["shown"] <= 6 * 1200
    assert (w["t_min"], w["t_max"]) == (0.0, 3 * N - 1.0)
    kept = dict(zip(w["t"], w["V"], strict=True))
    for at, value in SPIKES.items():  # no spike is lost
        assert kept[float(at)] == value
    assert len(list(cache.rglob("*.parquet"))) == 3
    assert _listing(runs) == before  # nothing written into the run directory
    again = SeriesCache(RunsDir(runs), cache)  # a restarted server
    assert again.window(RUN, None, None, 1200) == w
    assert again.summaries_made == 0


def test_a_zoom_shows_every_record_in_view_as_the_full_data_would(runs: Path) -> None:
    s = SeriesCache(RunsDir(runs), None)  # in memory only
    full = _full()
    for lo, hi in [(70_000.0, 80_000.0), (59_000.0, 61_500.0), (100.0, 170_500.0)]:
        got = s.window(RUN, lo, hi, 800)
        idx = decimate(full["time_s"], [full["voltage_V"], full["current_A"]], lo, hi, 800)
        if hi - lo < 20_000:  # only whole records: exactly what the full data gives
            assert got["t"] == np.round(full["time_s"][idx], 3).tolist()
            assert got["V"] == np.round(full["voltage_V"][idx], 6).tolist()
        kept = dict(zip(got["t"], got["V"], strict=True))
        for at, value in SPIKES.items():
            if lo <= at <= hi:
                assert kept[float(at)] == value
        assert got["t"][0] <= lo and got["t"][-1] >= hi  # lines run to the edges


def test_a_rewritten_chunk_and_the_staged_tail_are_seen(runs: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    s = SeriesCache(RunsDir(runs), cache)
    s.window(RUN, None, None, 600)
    data = runs / RUN / "data"
    last = _records(2)
    last = {c: v[: N // 2] for c, v in last.items()}
    pq.write_table(pa.table(last), data / "part-00002.parquet")
    os.utime(data / "part-00002.parquet", ns=(1, 1))  # a new size and time
    tail = {c: v + (2.5 * N if c in ("time_s", "record_seq") else 0) for c, v in last.items()}
    with (
        pa.OSFile(str(data / "staging-00003-000.arrow"), "wb") as f,
        pa.ipc.new_stream(f, pa.schema([(c, pa.array(v).type) for c, v in tail.items()])) as w,
    ):
        w.write_table(pa.table(tail))
    got = s.window(RUN, None, None, 600)
    assert got["stored"] == 2 * N + N // 2 + N // 2
    assert got["t_max"] == float(tail["time_s"][-1])
    assert len(list(cache.rglob("part-00002-*.parquet"))) == 1  # the old summary is gone


def test_warming_makes_summaries_once_and_keeps_nothing_in_memory(
    runs: Path, tmp_path: Path
) -> None:
    s = SeriesCache(RunsDir(runs), tmp_path / "cache")
    assert s.warm(RUN) == 3 and s.warm(RUN) == 0
    assert s.warm("no-such-run") == 0
    fresh = SeriesCache(RunsDir(runs), tmp_path / "cache")
    fresh.window(RUN, None, None, 1000)
    assert fresh.summaries_made == 0
    assert SeriesCache(RunsDir(runs), None).warm(RUN) == 0  # no cache: nothing to keep


def test_summaries_are_a_small_part_of_the_records(runs: Path, tmp_path: Path) -> None:
    s = SeriesCache(RunsDir(runs), tmp_path / "cache")
    s.warm(RUN)
    rows = sum(pq.read_metadata(f).num_rows for f in (tmp_path / "cache").rglob("*.parquet"))
    assert rows <= 3 * 6 * SUMMARY_BUCKETS and rows < 3 * N / 2


def test_events_are_read_from_the_end_and_on_from_where_they_stopped(tmp_path: Path) -> None:
    root = tmp_path / "runs" / RUN
    root.mkdir(parents=True)
    (root / "run.json").write_text("{}")
    lines = [
        json.dumps({"seq": i, "kind": "notify", "data": {"n": "x" * 50}}) for i in range(1, 3001)
    ]
    (root / "events.jsonl").write_text("\n".join(lines) + '\n{"seq": 3001, "ki')  # torn last
    runs = RunsDir(tmp_path / "runs")
    tail = runs.events_tail(RUN, 100)
    assert [e["seq"] for e in tail] == list(range(2901, 3001))
    assert [e["seq"] for e in runs.events(RUN)] == list(range(1, 3001))
    with open(root / "events.jsonl", "a") as fh:
        fh.write('nd": "notify"}\n{"seq": 3002, "kind": "notify"}\n')
    assert [e["seq"] for e in runs.events(RUN)][-2:] == [3001, 3002]
    assert [e["seq"] for e in runs.events_tail(RUN, 2)] == [3001, 3002]
