"""A damaged run is never resumed silently (bench/faults_damage.py's drills, one per kind).

Each drill copies a running cell's run directory as a kill -9 leaves it (the simulated
instrument goes on with its block), damages the copy and resumes it against the same
instrument. The resume must refuse with RunDamaged (what is damaged, what the instrument
can give back) and leave the data files and the instrument's running block as they were;
or, for a damaged copy of what the intact journal holds (events.jsonl), rebuild it and
say so in run.json.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.faults_damage import KINDS, drill

pytestmark = pytest.mark.timeout(240)

# what each refusal must name (the file, or what the cross-check found)
NAMES = {
    "WAL truncated (mid-frame)": "journal.sqlite-wal: cut off",
    "WAL truncated at a frame boundary": "older than the instrument's",
    "WAL bytes flipped": "journal.sqlite-wal: frame",
    "journal db deleted": "journal.sqlite is missing",
    "all journal files deleted": "journal.sqlite is missing",
    "journal db bytes flipped (3 places)": "journal",
    "journal replaced by an older copy": "older than the instrument's",
    "staging truncated to half": "staging",
    # a flipped byte lands in rows (their checksum fails) or in a batch's header (it
    # cannot be read, and whole batches follow it): either way the file is named
    "staging bytes flipped (3 places)": ".arrow: ",
    "staging deleted": "are missing",
    "staging sequence gap": "staging log: rows",
    "chunk file deleted": "part-00000.parquet is missing",
    "chunk bytes flipped": "part-00000.parquet is damaged",
    "chunk truncated": "part-00000.parquet is damaged",
}


def test_an_undamaged_crash_copy_resumes() -> None:
    r = drill(None)
    assert r["result"] == "resumed" and r["state"] == "finished" and r["unique"], r


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "events.jsonl truncated"])
def test_damage_is_refused_with_what_is_damaged(kind: str) -> None:
    r: dict[str, Any] = drill(kind)
    assert r["result"] == "detected", r
    assert NAMES[kind] in r["message"], r["message"]
    assert "labrig resume --from-instrument" in r["message"]
    assert "labrig resume --abort" in r["message"]
    assert r["files_unchanged"], "a refused resume changed a file that holds data"
    assert r["instrument_running"], "a refused resume stopped the instrument's block"


def test_events_file_losing_events_it_had_on_disk_is_rebuilt_and_reported() -> None:
    r = drill("events.jsonl truncated")
    assert r["result"] == "repaired", r
    assert "events.jsonl had lost events" in r["message"]
    assert r["state"] == "finished" and r["unique"]


def _crashed_and_damaged(tmp_path: Any, kind: str, then: Any) -> Any:
    import asyncio
    from pathlib import Path

    from bench.faults_damage import _crashed
    from labrig.orchestrator.clock import new_virtual_loop

    async def main() -> Any:
        victim, bindings, _older = await _crashed(Path(tmp_path), kind)
        KINDS[kind](victim)
        return await then(victim, bindings)

    with asyncio.Runner(loop_factory=new_virtual_loop) as r:
        return r.run(main())


def test_from_instrument_reads_the_records_back_and_leaves_the_block_running(
    tmp_path: Any,
) -> None:
    import json

    import pyarrow.parquet as pq

    from labrig.drivers.capabilities import ChannelState
    from labrig.orchestrator.run.damage import recover_run

    async def then(victim: Any, bindings: Any) -> Any:
        got = await recover_run(victim, bindings=bindings)
        return victim, got, await bindings.cycler.status()

    victim, got, status = _crashed_and_damaged(tmp_path, "staging deleted", then)
    assert got.rows > 0 and got.first_seq > 50_000  # after the last intact row (the chunk)
    table = pq.read_table(victim / "recovered" / "records-from-instrument.parquet")
    assert table.num_rows == got.rows
    assert table.column("seq")[0].as_py() == got.first_seq
    meta = json.loads((victim / "run.json").read_text())
    assert meta["state"] == "failed" and "read back from the instrument" in meta["reason"]
    assert (victim / "data" / "part-00000.parquet").exists()  # intact data stays
    assert status.state == ChannelState.running  # only read


def test_from_instrument_sets_a_damaged_journal_aside(tmp_path: Any) -> None:
    from labrig.orchestrator.run.damage import recover_run

    async def then(victim: Any, bindings: Any) -> Any:
        return victim, await recover_run(victim, bindings=bindings)

    victim, got = _crashed_and_damaged(tmp_path, "WAL bytes flipped", then)
    assert "journal.sqlite-wal" in got.set_aside
    assert (victim / "damaged" / "journal.sqlite-wal").exists()
    assert not (victim / "journal.sqlite-wal").exists()


def test_abort_puts_the_instrument_in_its_safe_state(tmp_path: Any) -> None:
    import json

    from labrig.drivers.capabilities import ChannelState
    from labrig.orchestrator.run.damage import abort_run

    async def then(victim: Any, bindings: Any) -> Any:
        await abort_run(victim, bindings=bindings)
        return victim, await bindings.cycler.status()

    victim, status = _crashed_and_damaged(tmp_path, "chunk bytes flipped", then)
    assert status.state != ChannelState.running
    assert json.loads((victim / "run.json").read_text())["state"] == "aborted"
