"""Runs one after another on one MACCOR channel: each run's tests carry its tag, so the
tester (which refuses a name its archive holds) takes every run's, and a new connection
bound to a run takes none of another run's tests for its own: not in the resume's
cross-check, not in ``--from-instrument``. In-process simulator on loopback TCP,
virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from labrig.drivers.capabilities import SEQ_BLOCK, ChannelState, InstrumentError
from labrig.drivers.maccor import MaccorCycler
from labrig.drivers.maccor.found import block_test_name, run_tag
from labrig.orchestrator.executor import Executor, RunOptions
from labrig.orchestrator.run.bindings import RunBindings
from labrig.orchestrator.run.damage import ChannelHeld, RunDamaged, recover_run
from labrig.orchestrator.runner import RunRequest, execute_run, resume_run
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from labrig.simulators.maccor import serve_maccor
from labrig.simulators.maccor.server import MacNetServer
from tests.helpers import run_virtual_strict, stored_rows
from tests.integration.electrochem.conftest import cycle_block

pytestmark = pytest.mark.timeout(120)

PROTOCOL = """\
name: maccor runs
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - label: aging
    repeat: 3
    steps: [Charge at 1C until 3.68 V, Rest for 10 min, Discharge at 1C until 2.28 V]
"""
OPTIONS = RunOptions(poll_s=60.0)
BLOCK_S = 2.2 * 3600  # about one cycle, one block


class _NeverStarts:
    """A channel whose first block start never returns (the host dies before it)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.asked = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start_block(self, block_id: int, steps: Any) -> None:
        self.asked.set()
        await asyncio.Event().wait()


class _Unbound:
    """A channel never told its run (as before runs told theirs): untagged names."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bind_run(self, run_id: str) -> None:
        pass


async def _run(srv: MacNetServer, out: Path, run_id: str, *, kill_at_s: float | None = None,
               never_starts: bool = False, unbound: bool = False) -> Path:  # fmt: skip
    """Run ``run_id`` on channel 0 to its end, or kill it (no safe state, no final
    writes) at ``kill_at_s`` or before its first block (``never_starts``); ``unbound``:
    as a run from before runs told their channel the run."""
    proto = load_protocol_text(PROTOCOL, source_name="runs.yaml")
    execs: list[Executor] = []
    async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
        req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=out,
                         sim=False, options=OPTIONS, durable=False, staging=True,
                         stage_every_s=0.0, run_id=run_id)  # fmt: skip
        cycler: Any = _NeverStarts(cyc.channel(0)) if never_starts else cyc.channel(0)
        if unbound:
            cycler = _Unbound(cycler)
        task = asyncio.ensure_future(
            execute_run(req, bindings=RunBindings(cycler=cycler), on_executor=execs.append)
        )
        if kill_at_s is None and not never_starts:
            outcome, root = await task
            assert outcome.state.value == "finished", outcome.reason
            return root
        if never_starts:
            while not cycler.asked.is_set():
                await asyncio.wait({task}, timeout=1.0)
        else:
            await asyncio.wait({task}, timeout=kill_at_s)
        assert not task.done(), "the run ended before it could be killed"
        execs[-1].abandon()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return out / run_id


def _files(srv: MacNetServer, run_id: str | None) -> dict[int, Any]:
    """Block id -> the seqs and volts in the tester's data file of that block's test of
    ``run_id`` (None: untagged), now."""
    ch = srv.tester.channels[0]
    out: dict[int, Any] = {}
    for k in range(1, 50):
        name = block_test_name(0, k, run_tag(run_id) if run_id is not None else None)
        text, _ = ch.data_file(name, 0, 10**9, srv.tester.now())
        if text is None:
            continue
        rows = [line.split("\t") for line in text.strip().splitlines()[1:]]
        rec = np.array([int(r[0]) for r in rows], dtype=np.int64)
        out[k] = (k * SEQ_BLOCK + rec, np.array([float(r[8]) for r in rows]))
    return out


def _same_as_files(seq: Any, volts: Any, files: dict[int, Any]) -> None:
    """``seq``/``volts`` are exactly the records of ``files`` (every block, none else)."""
    want_seq = np.concatenate([files[k][0] for k in sorted(files)])
    want_v = np.concatenate([files[k][1] for k in sorted(files)])
    order = np.argsort(seq)
    assert np.array_equal(np.asarray(seq)[order], want_seq)
    assert np.allclose(np.asarray(volts)[order], want_v, atol=1e-6)


def test_the_simulator_refuses_a_name_its_archive_holds() -> None:
    async def main() -> list[Any]:
        async with serve_maccor(1) as srv, MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
            ch = cyc.channel(0)  # bound to no run: names LR000B{k}
            await ch.start_block(1, cycle_block(10, 1.0))
            await ch.safe_state()
            ask = {"TestName": "lr000b1", "ProcName": "LR000B1", "Comment": "",
                   "Crate": 1, "ChamberNum": 0}  # fmt: skip
            check = await cyc.client.call(6, 11, 0, ask)
            start = await cyc.client.call(6, 2, 0, ask)
            detail = await cyc.client.call(6, 12, 0)
            other = await cyc.client.call(6, 11, 0, {**ask, "TestName": "LR000B2"})
            fresh = MaccorCycler.from_url(srv.url, channels=[0])
            async with fresh:  # a new host starting block 1 again is refused, clearly
                with pytest.raises(InstrumentError) as refused:
                    await fresh.channel(0).start_block(1, cycle_block(10, 1.0))
            return [check, start, detail, other, str(refused.value)]

    check, start, detail, other, refused = run_virtual_strict(main())
    assert check["Result"] == "File name exists in Archive"  # (6,11) result 4
    assert start["Result"] == "Name is not a unique filename"  # (6,2) result 19
    assert detail["Result"] == "File name exists in Archive: lr000b1"
    assert other["Result"] == "OK"
    assert "start refused: 'Name is not a unique filename'" in refused
    assert "File name exists in Archive: LR000B1" in refused


def test_two_runs_one_after_another_each_keep_their_own_tests(tmp_path: Path) -> None:
    async def main() -> Any:
        async with serve_maccor(1) as srv:
            a = await _run(srv, tmp_path, "run-a")
            b = await _run(srv, tmp_path, "run-b")
            return a, b, _files(srv, "run-a"), _files(srv, "run-b")

    a, b, files_a, files_b = run_virtual_strict(main())
    assert sorted(files_a) == sorted(files_b) == [1, 2, 3]  # same block ids, other names
    for root, files in ((a, files_a), (b, files_b)):
        rows = stored_rows(root)
        _same_as_files(rows.record_seq.to_numpy(), rows.voltage_V.to_numpy(), files)


def test_a_second_run_killed_before_its_first_block_resumes_on_its_own_tests(
    tmp_path: Path,
) -> None:
    async def main() -> Any:
        async with serve_maccor(1) as srv:
            await _run(srv, tmp_path, "run-a")
            b = await _run(srv, tmp_path, "run-b", never_starts=True)
            async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
                ch = cyc.channel(0)
                ch.bind_run("run-b")
                seen = await ch.status()
                outcome, _ = await resume_run(b, bindings=RunBindings(cycler=ch),
                                              options=OPTIONS, durable=False)  # fmt: skip
            return b, seen, outcome, _files(srv, "run-a"), _files(srv, "run-b")

    b, seen, outcome, files_a, files_b = run_virtual_strict(main())
    # the channel's test is run A's last: no block of run B's, and named as another's
    assert seen.block_id is None and seen.state == ChannelState.idle  # A ended: reset
    assert seen.other_test == block_test_name(0, 3, run_tag("run-a"))
    assert outcome.state.value == "finished", outcome.reason
    assert sorted(files_b) == [1, 2, 3]
    rows = stored_rows(b)
    _same_as_files(rows.record_seq.to_numpy(), rows.voltage_V.to_numpy(), files_b)
    assert sorted(files_a) == [1, 2, 3]  # run A's tests untouched


def test_from_instrument_reads_only_this_runs_tests(tmp_path: Path) -> None:
    async def main() -> Any:
        async with serve_maccor(1) as srv:
            await _run(srv, tmp_path, "run-a")
            b = await _run(srv, tmp_path, "run-b", kill_at_s=1.5 * BLOCK_S)
            for p in b.glob("journal.sqlite*"):
                p.unlink()
            async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
                # meanwhile run B's block was stopped and run C started on the channel
                ch = cyc.channel(0)
                await ch.safe_state()
                files_b = _files(srv, "run-b")
                ch.bind_run("run-c")
                await ch.start_block(1, cycle_block(10, 1.0))
            async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
                with pytest.raises(RunDamaged):
                    await resume_run(b, bindings=RunBindings(cycler=cyc.channel(0)),
                                     options=OPTIONS, durable=False)  # fmt: skip
                got = await recover_run(b, bindings=RunBindings(cycler=cyc.channel(0)))
            return b, got, files_b

    b, got, files_b = run_virtual_strict(main())
    assert sorted(files_b) == [1, 2]
    table = pq.read_table(b / "recovered" / "records-from-instrument.parquet").to_pandas()
    _same_as_files(table.seq.to_numpy(), table.voltage_V.to_numpy(), files_b)
    assert got.other_test == block_test_name(0, 1, run_tag("run-c"))
    reason = json.loads((b / "run.json").read_text())["reason"]
    assert f"the channel's current test, {got.other_test}, belongs to another run" in reason
    assert f"(block 1, record 1 to block 2, record {len(files_b[2][0])})" in reason


def test_a_resume_onto_a_channel_running_another_runs_test_is_refused(tmp_path: Path) -> None:
    async def main() -> Any:
        async with serve_maccor(1) as srv:
            b = await _run(srv, tmp_path, "run-b", kill_at_s=1.5 * BLOCK_S)
            async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
                ch = cyc.channel(0)  # run C takes the channel over
                await ch.safe_state()
                ch.bind_run("run-c")
                await ch.start_block(1, cycle_block(10, 1.0))
            async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
                with pytest.raises(ChannelHeld) as refused:
                    await resume_run(b, bindings=RunBindings(cycler=cyc.channel(0)),
                                     options=OPTIONS, durable=False)  # fmt: skip
                ch = cyc.channel(0)
                ch.bind_run("run-c")
                still = await ch.status()
            return str(refused.value), still

    said, still = run_virtual_strict(main())
    c1 = block_test_name(0, 1, run_tag("run-c"))
    assert f"holds another test, {c1} (running), not one of this run's" in said, said
    assert still.state == ChannelState.running and still.block_id == 1  # C's test goes on


def test_a_run_begun_before_runs_told_their_channel_resumes_on_its_untagged_tests(
    tmp_path: Path,
) -> None:
    async def main() -> Any:
        async with serve_maccor(1) as srv:
            old = await _run(srv, tmp_path, "run-old", kill_at_s=1.5 * BLOCK_S, unbound=True)
            meta = json.loads((old / "run.json").read_text())
            del meta["channel_bound"]  # its run.json as the labrig that began it wrote it
            (old / "run.json").write_text(json.dumps(meta))
            async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
                outcome, _ = await resume_run(old, bindings=RunBindings(cycler=cyc.channel(0)),
                                              options=OPTIONS, durable=False)  # fmt: skip
            return old, outcome, _files(srv, None), _files(srv, "run-old")

    old, outcome, untagged, tagged = run_virtual_strict(main())
    assert outcome.state.value == "finished", outcome.reason
    assert sorted(untagged) == [1, 2, 3] and tagged == {}  # block 2 adopted, not restarted
    rows = stored_rows(old)
    _same_as_files(rows.record_seq.to_numpy(), rows.voltage_V.to_numpy(), untagged)
