"""The checks a resume makes of a run's files give the same answers however they run."""

from __future__ import annotations

import json
import re
import sqlite3
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import labrig.orchestrator.journal as journal_mod
from labrig.orchestrator.events import Event, EventKind
from labrig.orchestrator.journal import Journal, JournalCorrupt, check_wal
from labrig.orchestrator.store import DATA_COLUMNS, RunStore
from labrig.orchestrator.store.reopen import ChunkCheck, reopen
from labrig.orchestrator.store.tables import SCHEMA, checked_batch, to_table, values_crc


def _reference_crc(table: pa.Table) -> int:
    """values_crc as documented: per column, the values' bytes; the step types as one
    text joined by 0x1F, a missing one as ""."""
    crc = 0
    for name in DATA_COLUMNS:
        values = table.column(name).to_pylist()
        if name == "step_type":
            text = "\x1f".join("" if v is None else str(v) for v in values)
            crc = zlib.crc32(text.encode(), crc)
        else:
            data = np.asarray(values, dtype=SCHEMA.field(name).type.to_pandas_dtype())
            crc = zlib.crc32(data.tobytes(), crc)
    return crc


def _cols(n: int, kinds: list[str | None]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    seq = np.arange(n)
    return {
        "time_s": seq * 10.0,
        "cycle": rng.integers(1, 5, n).astype(np.int32),
        "step": rng.integers(1, 9, n).astype(np.int32),
        # runs of kinds, as a run's steps give them, and single rows between
        "step_type": np.array([kinds[(i // 7) % len(kinds)] for i in range(n)], dtype=object),
        "current_A": rng.normal(size=n),
        "voltage_V": rng.normal(3.5, 0.1, n),
        "charge_capacity_Ah": rng.random(n),
        "discharge_capacity_Ah": rng.random(n),
        "temperature_C": rng.normal(25, 1, n),
        "record_seq": seq,
    }


@pytest.mark.parametrize("n", [0, 1, 2, 50, 1000])
@pytest.mark.parametrize(
    "kinds", [["charge"], ["charge", "rest", "discharge"], ["cv", "", "ocv", "rest"]]
)
def test_a_batch_checksum_is_the_documented_one(n: int, kinds: list[str | None]) -> None:
    table = to_table(_cols(n, kinds))
    want = _reference_crc(table)
    assert values_crc(table) == want
    for batch in table.to_batches() or [pa.RecordBatch.from_pylist([], schema=SCHEMA)]:
        assert values_crc(batch) == want
    if n > 10:  # a batch that starts inside its buffers (as a reader may hand it)
        part = table.slice(3, n - 5)
        assert values_crc(part.combine_chunks().to_batches()[0].slice(0)) == _reference_crc(part)
        assert values_crc(table.to_batches()[0].slice(3, n - 5)) == _reference_crc(part)


def test_a_batch_checksum_with_missing_values_and_plain_strings() -> None:
    table = to_table(_cols(40, ["charge", "rest"]))
    kinds = pa.array(["rest", None, "charge"] * 13 + ["rest"], pa.string())
    volts = pa.array([None if i % 5 == 0 else 3.0 + i for i in range(40)], pa.float64())
    plain = table.set_column(DATA_COLUMNS.index("step_type"), "step_type", kinds)
    plain = plain.set_column(DATA_COLUMNS.index("voltage_V"), "voltage_V", volts)
    dict_kinds = kinds.dictionary_encode().cast(SCHEMA.field("step_type").type)
    coded = plain.set_column(DATA_COLUMNS.index("step_type"), "step_type", dict_kinds)
    for t in (plain, coded):
        assert values_crc(t.to_batches()[0]) == values_crc(t)
    # a dictionary that holds a missing value, which rows refer to
    words = pa.array(["rest", None], pa.string())
    refs = pa.DictionaryArray.from_arrays(pa.array([0, 1, 1, 0] * 10, pa.int8()), words)
    odd = table.set_column(DATA_COLUMNS.index("step_type"), "step_type", refs)
    assert values_crc(odd.to_batches()[0]) == values_crc(odd)
    # ... and a dictionary of that one missing value (every row refers to it)
    only = pa.DictionaryArray.from_arrays(pa.array([0] * 40, pa.int8()), words[1:])
    blank = table.set_column(DATA_COLUMNS.index("step_type"), "step_type", only)
    assert values_crc(blank.to_batches()[0]) == values_crc(blank) == _reference_crc(blank)


def test_a_batch_checksum_of_columns_in_another_order() -> None:
    table = to_table(_cols(30, ["charge", "rest"]))
    turned = table.select(list(reversed(DATA_COLUMNS)))
    assert values_crc(turned.to_batches()[0]) == values_crc(table.to_batches()[0])
    with pytest.raises(KeyError, match="record_seq"):
        values_crc(table.drop_columns(["record_seq"]).to_batches()[0])


@pytest.mark.parametrize("n", [0, 1, 60, 1000])
@pytest.mark.parametrize("kinds", [["charge"], ["charge", None, "rest"]])
@pytest.mark.parametrize("given", ["as stored", "other types", "strided", "not a number"])
def test_a_batch_built_for_staging_carries_the_documented_checksum(
    n: int, kinds: list[str | None], given: str
) -> None:
    """The staging log builds a batch and its checksum in one pass over the arrays; the
    checksum is the one a restart computes from the batch as read back."""
    cols = _cols(n, kinds)
    if given == "other types":  # converted by Arrow: checksummed as converted
        cols.update(cycle=cols["cycle"].astype(np.int64), record_seq=cols["record_seq"] + 0.0)
        cols["step"] = cols["step"].astype(np.uint8)
    elif given == "strided":  # views into larger arrays, as slicing hands them over
        cols = {c: np.repeat(a, 2)[::2] for c, a in cols.items()}
    elif given == "not a number":
        cols["voltage_V"] = np.where(np.arange(n) % 3 == 0, np.nan, cols["voltage_V"])
    batch, crc = checked_batch(cols)
    assert batch.schema.equals(SCHEMA)
    assert batch.to_pydict() == to_table(cols).to_pydict() or given == "not a number"
    assert crc == values_crc(batch) == _reference_crc(pa.Table.from_batches([batch]))


@pytest.mark.parametrize(
    "kinds",
    [
        np.array(["charge"] * 9, dtype=object),  # one kind: a collection within one step
        np.array(["charge"] * 300, dtype=object),
        np.array(["charge"] * 4 + ["rest"] * 5, dtype=object),
        np.array(["charge", None, "charge"], dtype=object),
        np.array([None, None], dtype=object),
        np.array(["rest"] * 5),  # NumPy strings, not objects
    ],
)
def test_step_types_become_the_schema_dictionary(kinds: np.ndarray) -> None:
    cols = _cols(len(kinds), ["x"])
    cols["step_type"] = kinds
    col = to_table(cols).column("step_type")
    assert col.type == SCHEMA.field("step_type").type
    assert col.to_pylist() == [None if k is None else str(k) for k in kinds.tolist()]


def _journal_of(path: Path, n: int) -> None:
    j = Journal(path, durable=False)
    for i in range(1, n + 1):
        j.log_event(Event("r", "ch0", i, EventKind.notify, 0.0, float(i), {"n": i, "é": "ü"}))
        if i % 1000 == 0 or i == n:
            j.set_state("running", None)  # commits the events so far
    j.close()


def _edit(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()


@pytest.fixture(autouse=True)
def _pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events read in pieces of 4096 (a few pieces in these journals)."""
    monkeypatch.setattr(journal_mod, "_EVENTS_PIECE", 4096)


@pytest.mark.parametrize("n", [0, 1, 3, 4096, 4097, 9000])
def test_the_events_check_passes_every_whole_log(tmp_path: Path, n: int) -> None:
    path = tmp_path / "journal.sqlite"
    _journal_of(path, n)
    Journal.open_checked(path, durable=False).close()


def test_the_events_check_does_not_rest_on_the_order_sqlite_reads_a_piece_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite"
    _journal_of(path, 5000)
    backwards = journal_mod._EVENTS_PIECE_SQL.replace("ORDER BY seq", "ORDER BY seq DESC")
    monkeypatch.setattr(journal_mod, "_EVENTS_PIECE_SQL", backwards)
    Journal.open_checked(path, durable=False).close()  # checked again row by row: whole
    _edit(path, "UPDATE events SET body = replace(body, '\"n\"', '\"m\"') WHERE seq = 7")
    with pytest.raises(JournalCorrupt, match=re.escape("do not match their checksum")):
        Journal.open_checked(path, durable=False)


@pytest.mark.parametrize(
    ("gone", "said"),
    [
        ((1,), "events 1..1 are missing"),
        ((2, 3), "events 2..3 are missing"),
        ((4096,), "events 4096..4096 are missing"),  # the last of a piece read at once
        ((4096, 4097), "events 4096..4097 are missing"),  # across two pieces
        ((4097, 4098), "events 4097..4098 are missing"),  # the first of the next
        ((8000,), "events 8000..8000 are missing"),
        ((9000,), "its events (1..8999) do not match"),  # the newest: the count says
    ],
)
def test_the_events_check_names_missing_events(
    tmp_path: Path, gone: tuple[int, ...], said: str
) -> None:
    path = tmp_path / "journal.sqlite"
    _journal_of(path, 9000)
    for seq in gone:
        _edit(path, "DELETE FROM events WHERE seq = ?", seq)
    with pytest.raises(JournalCorrupt, match=re.escape(said)):
        Journal.open_checked(path, durable=False)


@pytest.mark.parametrize("seq", [1, 4096, 5000, 9000])
def test_the_events_check_finds_a_changed_event(tmp_path: Path, seq: int) -> None:
    path = tmp_path / "journal.sqlite"
    _journal_of(path, 9000)
    _edit(path, "UPDATE events SET body = replace(body, '\"n\"', '\"m\"') WHERE seq = ?", seq)
    with pytest.raises(JournalCorrupt, match=re.escape("do not match their checksum")):
        Journal.open_checked(path, durable=False)


def _damage_page(path: Path, needle: bytes) -> None:
    """Call the page holding ``needle`` (the journal checkpointed) an interior page of an
    index, though it is a leaf page of a table: its structure damaged, its values not."""
    raw = bytearray(path.read_bytes())
    size = struct.unpack(">H", raw[16:18])[0]
    size = 65536 if size == 1 else size
    at = raw.find(needle)
    assert at > 0, needle
    raw[at // size * size] = 0x02
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("where", ["first", "middle", "newest"])
def test_a_damaged_page_of_the_events_is_refused(tmp_path: Path, where: str) -> None:
    """The events' pages are not given to SQLite's page check (the events check reads
    them all): a page whose structure is damaged is refused all the same."""
    path = tmp_path / "journal.sqlite"
    _journal_of(path, 9000)
    seq = {"first": 1, "middle": 4500, "newest": 9000}[where]
    _damage_page(path, f'"seq":{seq},'.encode())
    with pytest.raises(JournalCorrupt):
        Journal.open_checked(path, durable=False)


def test_a_damaged_events_page_of_a_journal_without_the_events_checksum_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    _journal_of(path, 9000)
    _edit(path, "DELETE FROM kv WHERE key = 'log'")  # as written before the checksum
    Journal.open_checked(path, durable=False).close()
    _damage_page(path, b'"seq":4500,')
    with pytest.raises(JournalCorrupt):
        Journal.open_checked(path, durable=False)


def test_a_damaged_page_of_the_cycles_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path, durable=False)
    for c in range(1, 200):
        j.add_cycle({"cycle": c, "marker": f"cycle-{c:05d}"})
    j.set_state("running", None)
    j.close()
    Journal.open_checked(path, durable=False).close()
    _damage_page(path, b"cycle-00150")
    with pytest.raises(JournalCorrupt):
        Journal.open_checked(path, durable=False)


def _chunks(tmp_path: Path, n: int) -> tuple[Path, dict[str, object]]:
    store = RunStore.create(
        tmp_path, "run", protocol_yaml="x: 1\n", meta={}, durable=False, staging=True,
        chunk_rows=100,
    )  # fmt: skip
    for k in range(n):
        rows = _cols(100, ["charge", "rest"])
        rows["record_seq"] = rows["record_seq"] + 100 * k
        store.append_records(rows)
    store.close()
    return store.data_dir, json.loads((store.root / "run.json").read_text())


def test_the_chunks_are_checked_on_a_thread_with_the_same_findings(tmp_path: Path) -> None:
    data, meta = _chunks(tmp_path, 4)
    assert ChunkCheck(data, meta).damage() == []
    raw = bytearray((data / "part-00002.parquet").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (data / "part-00002.parquet").write_bytes(bytes(raw))
    (data / "part-00001.parquet").unlink()
    assert ChunkCheck(data, meta).damage() == [
        "data/part-00001.parquet is missing",
        "data/part-00002.parquet is damaged (its bytes fail their checksum)",
    ]
    found = reopen(data, meta, None, durable=False, check=True)
    assert found.damage[:2] == ChunkCheck(data, meta).damage()
    # every chunk gone: nothing to read, still each one missing
    for part in data.glob("part-*.parquet"):
        part.unlink()
    assert len(ChunkCheck(data, meta).damage()) == 4


def test_a_chunk_that_cannot_be_read_fails_where_the_check_is_waited_for(
    tmp_path: Path,
) -> None:
    data, meta = _chunks(tmp_path, 2)
    (data / "part-00001.parquet").unlink()
    (data / "part-00001.parquet").mkdir()  # read_bytes: IsADirectoryError
    check = ChunkCheck(data, meta)
    with pytest.raises(IsADirectoryError):
        check.damage()
    assert not any(t.name == "chunk-check" for t in threading.enumerate())


def _ref_sum(buf: bytes, s0: int, s1: int, order: str) -> tuple[int, int]:
    """SQLite's WAL checksum, word pair by word pair."""
    words = struct.unpack(f"{order}{len(buf) // 4}I", buf)
    for k in range(0, len(words), 2):
        s0 = (s0 + words[k] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[k + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _wal(magic: int, pages: list[bytes], page: int, *, stale: int = 0) -> bytes:
    """A write-ahead log as SQLite writes one (then ``stale`` frames of an older one)."""
    order = ">" if magic & 1 else "<"
    head = struct.pack(">6I", magic, 3007000, page, 0, 11, 22)
    s = _ref_sum(head, 0, 0, order)
    out = [head + struct.pack(">2I", *s)]
    for i, data in enumerate(pages):
        first = struct.pack(">2I", i + 1, i + 1)  # page number, size after commit
        s = _ref_sum(first + data, *s, order)
        out.append(first + struct.pack(">4I", 11, 22, *s) + data)
    for i in range(stale):
        out.append(struct.pack(">6I", i + 1, 0, 5, 6, 7, 8) + bytes(page))
    return b"".join(out)


@pytest.mark.parametrize("magic", [0x377F0682, 0x377F0683])
@pytest.mark.parametrize("stale", [0, 2])
def test_the_wal_check_finds_the_frame_a_byte_was_flipped_in(
    tmp_path: Path, magic: int, stale: int
) -> None:
    rng = np.random.default_rng(magic + stale)
    page = 1024
    pages = [rng.integers(0, 256, page, dtype=np.uint8).tobytes() for _ in range(40)]
    wal = _wal(magic, pages, page, stale=stale)
    path = tmp_path / "journal.sqlite"
    (tmp_path / "journal.sqlite-wal").write_bytes(wal)
    check_wal(path)
    for frame in (1, 2, 17, 40):
        for where in (0, 7, 30, page + 23):  # its header's first words, its page
            bad = bytearray(wal)
            bad[32 + (frame - 1) * (page + 24) + where] ^= 0x40
            (tmp_path / "journal.sqlite-wal").write_bytes(bytes(bad))
            with pytest.raises(JournalCorrupt, match=f"frame {frame} fails its checksum"):
                check_wal(path)
    if stale:  # an older generation's frame is not read: damage there is no matter
        bad = bytearray(wal)
        bad[-5] ^= 0x40
        (tmp_path / "journal.sqlite-wal").write_bytes(bytes(bad))
        check_wal(path)


def test_the_wal_check_passes_the_log_a_killed_writer_leaves(tmp_path: Path) -> None:
    import shutil

    j = Journal(tmp_path / "journal.sqlite", durable=False)
    for i in range(1, 1500):
        j.log_event(Event("r", "ch0", i, EventKind.notify, 0.0, float(i), {"pad": "x" * 300}))
        j.set_state("running", None)
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("journal.sqlite", "journal.sqlite-wal"):  # as kill -9 leaves them
        shutil.copy(tmp_path / name, killed / name)
    j.close()
    assert (killed / "journal.sqlite-wal").stat().st_size > 1 << 20
    Journal.open_checked(killed / "journal.sqlite", durable=False).close()
