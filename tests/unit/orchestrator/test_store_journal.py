from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.events import Event, EventKind, RunState
from labrig.orchestrator.journal import Journal, JournalCorrupt
from labrig.orchestrator.store import CYCLE_COLUMNS, DATA_COLUMNS, RunStore


def _rows(n: int, start: int) -> dict[str, np.ndarray]:
    seq = np.arange(start, start + n)
    return {
        "time_s": seq * 10.0,
        "cycle": np.ones(n, dtype=np.int32),
        "step": np.ones(n, dtype=np.int32),
        "step_type": np.array(["charge"] * n, dtype=object),
        "current_A": np.full(n, 1e-3),
        "voltage_V": np.linspace(3.0, 3.6, n),
        "charge_capacity_Ah": seq * 1e-6,
        "discharge_capacity_Ah": np.zeros(n),
        "temperature_C": np.full(n, 25.0),
        "record_seq": seq,
    }


def test_store_writes_chunks_atomically_and_cycles(tmp_path: Path) -> None:
    store = RunStore.create(
        tmp_path,
        "r1",
        protocol_yaml="name: x\n",
        meta={"protocol": {"name": "x"}},
        chunk_rows=100,
        durable=False,
    )
    store.append_records(_rows(150, 0))
    assert len(list((store.root / "data").glob("part-*.parquet"))) == 1
    store.append_records(_rows(30, 150))
    store.add_cycle({"cycle": 1, "charge_capacity_mAh": 2.0, "discharge_capacity_mAh": 1.8})
    store.finish(RunState.finished)
    store.close()
    parts = sorted((store.root / "data").glob("part-*.parquet"))
    assert len(parts) == 2
    table = pq.read_table(store.root / "data")
    assert table.column_names == list(DATA_COLUMNS)
    assert table.num_rows == 180
    assert np.array_equal(np.sort(table.column("record_seq").to_numpy()), np.arange(180))
    assert not list(store.root.rglob("*.tmp"))
    cycles = pq.read_table(store.root / "cycles.parquet")
    assert cycles.column_names == list(CYCLE_COLUMNS)
    csv_head = (store.root / "cycles.csv").read_text().splitlines()[0]
    assert csv_head.split(",")[:10] == list(CYCLE_COLUMNS[:10])
    meta = json.loads((store.root / "run.json").read_text())
    assert meta["state"] == "finished" and meta["rows"] == 180


def test_existing_run_directory_is_never_overwritten(tmp_path: Path) -> None:
    RunStore.create(tmp_path, "r1", protocol_yaml="", meta={}, durable=False).close()
    with pytest.raises(FileExistsError):
        RunStore.create(tmp_path, "r1", protocol_yaml="", meta={}, durable=False)


def test_eis_files_are_named_by_cycle(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "r1", protocol_yaml="", meta={}, durable=False)
    f = np.geomspace(1e6, 0.1, 5)
    p1 = store.write_eis(1, f, f * 0 + 30, -f * 0 - 1)
    p2 = store.write_eis(1, f, f * 0 + 30, -f * 0 - 1)
    store.close()
    assert p1.name == "cycle_00001.parquet" and p2.name == "cycle_00001_2.parquet"
    assert pq.read_table(p1).column_names == ["frequency_Hz", "z_real_ohm", "z_imag_ohm"]


def test_journal_round_trip_and_corruption_detected(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    j.log_event(Event("r", "ch0", 1, EventKind.run_started, 0.0, 0.0, {}))
    j.unit_start({"kind": "block", "pos": [["n", 1], ["it", 7, "b"]], "block_id": 3})
    j.unit_done({"kind": "block", "pos": [["n", 1], ["it", 7, "b"]], "block_id": 3})
    j.close()
    j = Journal(path)
    unit = j.get("unit")
    assert unit["state"] == "done" and unit["pos"] == [["n", 1], ["it", 7, "b"]]
    assert [e.kind for e in j.events()] == [EventKind.run_started]
    j.close()
    # tamper with a value behind the checksum's back
    db = sqlite3.connect(path)
    tampered = '{"kind":"block","pos":[["n",1],["it",8,"b"]],"block_id":3,"state":"done"}'
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (tampered, "unit"))
    db.commit()
    db.close()
    j = Journal(path)
    with pytest.raises(JournalCorrupt):
        j.get("unit")
    j.close()
    # garbage bytes instead of a database
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(JournalCorrupt):
        Journal(bad)


@pytest.mark.parametrize("window", [1 << 16, 64])
def test_events_file_reconciled_with_journal_after_a_crash(tmp_path: Path, window: int) -> None:
    import labrig.orchestrator.store.events_file as store_mod

    store = RunStore.create(tmp_path, "r1", protocol_yaml="", meta={}, durable=False)
    j = Journal(tmp_path / "j.sqlite", durable=False)
    events = [Event("r", "c", i, EventKind.notify, 0.0, float(i), {"n": i}) for i in range(1, 9)]
    for e in events[:6]:
        j.log_event(e)
    j.set_state("running", None)  # commits events 1..6
    # the file got 1..7 and a torn half of 8 before the process died
    for e in events[:7]:
        store.append_event(e)
    store.close()
    with open(store.root / "events.jsonl", "a") as f:
        f.write(events[7].to_json()[:20])
    old = store_mod.tail_cut
    try:
        store_mod.tail_cut = lambda f, size, last, window=window: old(f, size, last, window)
        again = RunStore.open_existing(store.root, durable=False)
        again.reconcile_events(j)
    finally:
        store_mod.tail_cut = old
    again.close()
    lines = (store.root / "events.jsonl").read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3, 4, 5, 6]
    j.close()


def _staged_store(tmp_path: Path, every_s: float = 0.0) -> RunStore:
    return RunStore.create(
        tmp_path, "r1", protocol_yaml="", meta={}, chunk_rows=100_000,
        durable=False, staging=True, stage_every_s=every_s,
    )  # fmt: skip


def test_grouped_staging_writes_only_on_sync(tmp_path: Path) -> None:
    store = _staged_store(tmp_path, every_s=3600.0)
    store.append_records(_rows(5, 0))
    store.append_records(_rows(5, 5))
    store.abandon()  # killed before a sync: nothing of these rows was staged
    store.close()
    peek = RunStore.open_existing(store.root, durable=False, staging=True)
    assert peek.stored_seq == -1
    peek.close()
    store = RunStore.open_existing(store.root, durable=False, staging=True, stage_every_s=3600.0)
    store.append_records(_rows(10, 0))
    store.sync()  # what the executor does before the journal records a position
    store.append_records(_rows(3, 10))
    store.abandon()
    store.close()
    again = RunStore.open_existing(store.root, durable=False, staging=True)
    assert again.stored_seq == 9  # the rows since are read again from the instrument
    again.close()


def test_many_small_stagings_are_compacted_and_a_restart_reads_each_row_once(
    tmp_path: Path,
) -> None:
    import labrig.orchestrator.store as store_mod

    store = _staged_store(tmp_path)
    for k in range(store_mod.STAGING_BATCHES * 3 + 5):  # a few compactions
        store.append_records(_rows(2, 2 * k))
    n = 2 * (store_mod.STAGING_BATCHES * 3 + 5)
    files = sorted((store.root / "data").glob("staging-*.arrow"))
    # three merged files of one batch each, and the open one with the last five
    batches = [pa.ipc.open_stream(f.read_bytes()).read_all().to_batches() for f in files]
    assert [len(b) for b in batches] == [1, 1, 1, 5]
    # a crash in the middle of a compaction: the small file is still there beside the
    # merged one that holds the same rows
    (store.root / "data" / "staging-00000-000.arrow").write_bytes(files[0].read_bytes())
    store.abandon()
    store.close()
    again = RunStore.open_existing(store.root, durable=False, staging=True)
    assert again.stored_seq == n - 1
    again.finish(RunState.finished)
    again.close()
    seq = pq.read_table(store.root / "data").column("record_seq").to_numpy()
    assert np.array_equal(seq, np.arange(n))
