"""A damaged run on a MACCOR tester: the resume (a new MacNet connection, as after a
kill -9) cross-checks the journal against the tester's own position, which (4,6) names,
and refuses; ``--from-instrument`` reads every test of the run back from the tester's
data files, none lost, none twice. In-process simulator on loopback TCP, virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from labrig.drivers.capabilities import ChannelState
from labrig.drivers.maccor import MaccorCycler
from labrig.drivers.maccor.found import block_test_name, run_tag
from labrig.orchestrator.executor import Executor, RunOptions
from labrig.orchestrator.run.bindings import RunBindings
from labrig.orchestrator.run.damage import RunDamaged, recover_run
from labrig.orchestrator.runner import RunRequest, execute_run, resume_run
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from labrig.simulators.maccor import serve_maccor
from labrig.simulators.maccor.server import MacNetServer
from tests.helpers import run_virtual_strict, stored_rows

pytestmark = pytest.mark.timeout(120)

PROTOCOL = """\
name: maccor damage
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - label: aging
    repeat: 6
    steps: [Charge at 1C until 3.68 V, Rest for 10 min, Discharge at 1C until 2.28 V]
    checkpoints:
      - every: 2
        steps: [Charge at 0.5C until 3.68 V, Discharge at 0.5C until 2.28 V]
"""
OPTIONS = RunOptions(poll_s=60.0)
KILL_AT_S = 4.5 * 2.2 * 3600  # in cycle 5
SEQ_BLOCK = 1 << 32

Then = Callable[[Path, MacNetServer, Path | None], Awaitable[Any]]


def _digest(run: Path) -> dict[str, str]:
    files = [run / "events.jsonl", *sorted((run / "data").glob("*"))]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


async def _crashed(out: Path, then: Then, *, older_at_s: float | None = None) -> Any:
    """A run on a MACCOR channel, killed (no safe state, no final writes) at KILL_AT_S
    while the tester goes on; ``then(run dir, server, older journal copy)``."""
    proto = load_protocol_text(PROTOCOL, source_name="damage.yaml")
    async with serve_maccor(1) as srv:
        execs: list[Executor] = []
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        older: Path | None = None
        async with MaccorCycler.from_url(srv.url, channels=[0]) as first:
            req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto),
                             out_dir=out / "runs", sim=False, options=OPTIONS, durable=False,
                             staging=True, stage_every_s=0.0)  # fmt: skip
            bindings = RunBindings(cycler=first.channel(0))
            task = asyncio.ensure_future(
                execute_run(req, bindings=bindings, on_executor=execs.append)
            )
            if older_at_s is not None:
                await asyncio.wait({task}, timeout=older_at_s)
                (root,) = (out / "runs").iterdir()
                older = out / "older"
                older.mkdir()
                for p in root.glob("journal.sqlite*"):
                    shutil.copy2(p, older / p.name)
            await asyncio.wait({task}, timeout=max(0.0, t0 + KILL_AT_S - loop.time()))
            assert not task.done(), "the run ended before it could be killed"
            execs[-1].abandon()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        (root,) = (out / "runs").iterdir()
        return await then(root, srv, older)


async def _refused(root: Path, srv: MacNetServer) -> RunDamaged:
    """Resume through a new connection: it must refuse, change no file, stop nothing."""
    before = _digest(root)
    async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
        with pytest.raises(RunDamaged) as refused:
            await resume_run(root, bindings=RunBindings(cycler=cyc.channel(0)),
                             options=OPTIONS, durable=False)  # fmt: skip
        assert (await cyc.channel(0).status()).state == ChannelState.running
    assert _digest(root) == before
    return refused.value


def _replace_journal(run: Path, older: Path | None) -> None:
    """Delete the run's journal files; put ``older`` 's copies in their place."""
    for p in run.glob("journal.sqlite*"):
        p.unlink()
    for p in older.iterdir() if older is not None else ():
        shutil.copy2(p, run / p.name)


def _tester_files(srv: MacNetServer, root: Path) -> dict[int, int]:
    """Block id -> records in the tester's data file of that block's test of the run in
    ``root``, now."""
    ch = srv.tester.channels[0]
    tag = run_tag(json.loads((root / "run.json").read_text())["run_id"])
    out: dict[int, int] = {}
    for k in range(1, 100):
        text, n = ch.data_file(block_test_name(0, k, tag), 0, 10**9, srv.tester.now())
        if text is not None:
            out[k] = n
    return out


def test_a_deleted_journal_is_refused_then_every_record_is_read_back(tmp_path: Path) -> None:
    async def then(root: Path, srv: MacNetServer, _older: Path | None) -> Any:
        stored = stored_rows(root)
        _replace_journal(root, None)
        refused = await _refused(root, srv)
        async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
            got = await recover_run(root, bindings=RunBindings(cycler=cyc.channel(0)))
            running = (await cyc.channel(0).status()).state
        return refused, got, stored, _tester_files(srv, root), running

    refused, got, stored, files, running = run_virtual_strict(_crashed(tmp_path, then))
    assert "journal.sqlite is missing" in str(refused)
    assert "labrig resume --from-instrument" in str(refused)
    assert running == ChannelState.running  # the tester was only read
    root = next((tmp_path / "runs").iterdir())
    table = pq.read_table(root / "recovered" / "records-from-instrument.parquet").to_pandas()
    seq = table.seq.to_numpy()
    assert got.rows == len(seq) and len(np.unique(seq)) == len(seq)  # none twice
    assert len(files) >= 4  # blocks started before the kill
    for block, n in files.items():  # every record of every test of the run, none lost
        rec = np.sort(seq[seq >> 32 == block] & (SEQ_BLOCK - 1))
        assert np.array_equal(rec, np.arange(1, n + 1)), f"block {block}"
    assert set((seq >> 32).tolist()) == set(files)
    # what the run had stored is among them, equal
    assert len(stored) > 100
    mine = table.set_index("seq").loc[stored.record_seq.to_numpy()]
    assert np.allclose(mine.voltage_V.to_numpy(), stored.voltage_V.to_numpy())
    assert np.allclose(mine.current_A.to_numpy(), stored.current_A.to_numpy())
    # on the run's clock: dated as the run dated them, not from the first block read
    assert np.allclose(mine.time_s.to_numpy(), stored.time_s.to_numpy(), atol=1e-6)
    assert np.all(np.diff(table.sort_values("seq").time_s.to_numpy()) >= 0)
    assert (table.step_id >= 0).all()  # each record's step, from the test's procedure


def test_an_older_journal_is_refused_against_the_testers_position(tmp_path: Path) -> None:
    async def then(root: Path, srv: MacNetServer, older: Path | None) -> Any:
        assert older is not None
        _replace_journal(root, older)
        return await _refused(root, srv), _tester_files(srv, root)

    refused, files = run_virtual_strict(_crashed(tmp_path, then, older_at_s=KILL_AT_S * 0.4))
    said = str(refused)
    assert "older than the instrument's" in said, said
    assert f"the instrument is on block {max(files)}" in said
    # records named as a person reads them, not as block * 2**32 + record
    assert f"(records up to block {max(files)}, record " in said, said
    assert not re.search(r"#\d{6,}", said), said


def test_an_intact_run_resumes_and_its_events_say_which_limit_check_was_done(
    tmp_path: Path,
) -> None:
    async def then(root: Path, srv: MacNetServer, _older: Path | None) -> Any:
        async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
            outcome, _ = await resume_run(root, bindings=RunBindings(cycler=cyc.channel(0)),
                                          options=OPTIONS, durable=False)  # fmt: skip
        return outcome

    outcome = run_virtual_strict(_crashed(tmp_path, then))
    assert outcome.state.value == "finished", outcome.reason
    root = next((tmp_path / "runs").iterdir())
    events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
    notes = [e["data"].get("message", "") for e in events if e["kind"] == "notify"]
    (note,) = [n for n in notes if "limits" in n]
    # the block kept running while the host was down: the tester's limits were not read
    assert note.startswith("limits kept from the start: the channel's test is running")
    assert "not read back after the restart" in note
    seq = stored_rows(root).record_seq.to_numpy()
    assert len(np.unique(seq)) == len(seq)


def test_missing_rows_are_named_by_block_and_record(tmp_path: Path) -> None:
    async def then(root: Path, srv: MacNetServer, _older: Path | None) -> Any:
        for p in (root / "data").glob("staging-*.arrow"):
            p.unlink()
        return await _refused(root, srv)

    said = str(run_virtual_strict(_crashed(tmp_path, then)))
    assert re.search(r"rows (after|up to) block \d+, record \d+ (up to block \d+, record \d+ )?"
                     r"are missing", said), said  # fmt: skip
    assert "reads them back into recovered/" in said, said  # no row of it was intact
    assert not re.search(r"\d{10,}", said), said  # no raw block * 2**32 + record


def test_records_the_run_lost_are_dated_from_the_journals_block_start(tmp_path: Path) -> None:
    """The staging log deleted, the journal intact: the block the journal was on is put
    on the run's clock from the start the journal holds, as the run had dated it."""

    async def then(root: Path, srv: MacNetServer, _older: Path | None) -> Any:
        stored = stored_rows(root)  # what the run held, before it is lost
        for p in (root / "data").glob("staging-*.arrow"):
            p.unlink()
        async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
            await recover_run(root, bindings=RunBindings(cycler=cyc.channel(0)))
        return stored

    stored = run_virtual_strict(_crashed(tmp_path, then))
    root = next((tmp_path / "runs").iterdir())
    table = pq.read_table(root / "recovered" / "records-from-instrument.parquet").to_pandas()
    last = int(table.seq.max()) >> 32
    lost = stored[stored.record_seq.to_numpy() >> 32 == last]
    assert len(lost) > 10
    mine = table.set_index("seq").loc[lost.record_seq.to_numpy()]
    assert np.allclose(mine.time_s.to_numpy(), lost.time_s.to_numpy(), atol=1e-6)
    assert np.all(np.diff(table.sort_values("seq").time_s.to_numpy()) >= 0)
