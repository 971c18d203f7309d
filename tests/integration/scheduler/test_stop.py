"""Stopping the scheduler: once at the next safe point (resumable), twice at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from labrig.orchestrator.run import RunBindings
from labrig.orchestrator.scheduler import JobState, Scheduler
from labrig.orchestrator.station import INPROCESS_STATION, Position
from labrig.orchestrator.store.writer import Writer
from tests.helpers import run_virtual_strict

from .conftest import CYCLE, EIS, spec

# EIS checkpoints split the cycles into blocks: a block boundary every cycle
STEPS = [*CYCLE, EIS, *CYCLE, EIS, *CYCLE]


def _events(root: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]


def _scenario(tmp_path: Path, twice: bool) -> tuple[list[Any], dict[str, Any], float]:
    cyclers: dict[str, Any] = {}

    def adapter(b: RunBindings, pos: Position) -> RunBindings:
        cyclers[pos.name] = b.cycler
        return b

    async def main() -> tuple[list[Any], dict[str, Any], float]:
        loop = asyncio.get_running_loop()
        async with Scheduler(
            station=INPROCESS_STATION, out_dir=tmp_path, sim=True, adapter=adapter
        ) as s:
            jobs = [s.submit(spec(f"r{i}", STEPS, position=f"ch{i}")) for i in range(3)]
            queued = s.submit(spec("queued", CYCLE, position="ch0"))
            await asyncio.sleep(1800)  # mid-way through the first charge
            s.stop(at_once=False, reason="SIGTERM")
            t_second = loop.time()
            if twice:
                await asyncio.sleep(1.0)
                t_second = loop.time()
                s.stop(at_once=True, reason="second SIGTERM")
            await s.wait_all()
            took = loop.time() - t_second
            states = {n: c.engine.status(loop.time()).state for n, c in cyclers.items()}
            return [*jobs, queued], states, took

    return run_virtual_strict(main())


def test_first_stop_pauses_every_run_at_a_safe_point_and_marks_it_resumable(
    tmp_path: Path,
) -> None:
    jobs, engine_states, _ = _scenario(tmp_path, twice=False)
    *runs, queued = jobs
    for j in runs:
        assert j.state is JobState.stopped, (j.run_id, j.state, j.reason)
        meta = json.loads((j.run_dir / "run.json").read_text())
        assert meta["state"] == "paused" and meta["resumable"] is True
        kinds = [e["kind"] for e in _events(j.run_dir)]
        # it finished the block it was in (the first cycle) and paused at its end
        assert kinds.index("paused") > kinds.index("step_ended")
        assert kinds.count("step_ended") == 2
        # left as resume expects it: no end written, the journal untouched
        assert "run_ended" not in kinds and kinds[-1] == "paused"
    assert queued.state is JobState.stopped and queued.executor is None
    assert all(st != "running" for st in engine_states.values())


def test_second_stop_goes_to_the_safe_state_at_once_and_aborts_with_the_reason(
    tmp_path: Path,
) -> None:
    jobs, engine_states, took = _scenario(tmp_path, twice=True)
    *runs, _queued = jobs
    assert took <= 1.0
    for j in runs:
        assert j.state is JobState.aborted
        assert "second SIGTERM" in (j.reason or "")
        meta = json.loads((j.run_dir / "run.json").read_text())
        assert meta["state"] == "aborted" and "second SIGTERM" in meta["reason"]
        assert meta["resumable"] is False
        assert "paused" not in [e["kind"] for e in _events(j.run_dir)]
    assert all(st != "running" for st in engine_states.values())


def test_first_stop_with_a_grace_time_leaves_long_blocks_to_the_instrument(
    tmp_path: Path,
) -> None:
    """A block far from its end is not waited for past the grace time: the run is left
    resumable and the instrument carries on with the block under its own limits."""
    cyclers: dict[str, Any] = {}

    def adapter(b: RunBindings, pos: Position) -> RunBindings:
        cyclers[pos.name] = b.cycler
        return b

    async def main() -> tuple[Any, str, float]:
        loop = asyncio.get_running_loop()
        async with Scheduler(
            station=INPROCESS_STATION,
            out_dir=tmp_path,
            sim=True,
            adapter=adapter,
            stop_grace_s=60.0,
        ) as s:
            job = s.submit(spec("long", STEPS, position="ch0"))
            await asyncio.sleep(600)  # early in the first charge
            t0 = loop.time()
            s.stop(at_once=False, reason="SIGTERM")
            await s.wait_all()
            took = loop.time() - t0
            state = cyclers["ch0"].engine.status(loop.time()).state
            return job, state, took

    job, engine_state, took = run_virtual_strict(main())
    assert took <= 60.0 + 1e-6  # the grace time, not the rest of the block
    assert job.state is JobState.stopped, (job.state, job.reason)
    meta = json.loads((job.run_dir / "run.json").read_text())
    assert meta["state"] == "paused" and meta["resumable"] is True
    kinds = [e["kind"] for e in _events(job.run_dir)]
    assert "run_ended" not in kinds
    assert engine_state == "running"  # the instrument goes on with the block


class _Recorder:
    """Notes when each channel reached its safe state and when each run began its final
    writes, on the event loop's clock."""

    def __init__(self) -> None:
        self.safe: list[float] = []
        self.writes: list[float] = []


class _SlowSafe:
    """A channel whose safe state takes ``delay_s`` to be confirmed."""

    def __init__(self, inner: Any, delay_s: float, rec: _Recorder) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.rec = rec

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def safe_state(self) -> None:
        await self.inner.safe_state()
        await asyncio.sleep(self.delay_s)
        self.rec.safe.append(asyncio.get_running_loop().time())


def test_a_stop_at_once_makes_every_channel_safe_and_final_writes_leave_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import labrig.orchestrator.store.runstore as runstore

    rec = _Recorder()
    delays = {"ch0": 0.1, "ch1": 3.0, "ch2": 6.0}
    final_meta_threads: dict[Path, str] = {}  # the run's own final run.json write
    write = runstore.atomic_write_bytes

    in_batch = threading.local()
    run_batch = Writer._run_batch

    def recording_batch(self: Writer, batch: Any) -> None:
        in_batch.on = True
        try:
            run_batch(self, batch)
        finally:
            in_batch.on = False

    def recording_write(path: Path, data: bytes, durable: bool) -> None:
        if path.name == "run.json" and b'"ended"' in data:
            where = "writer" if getattr(in_batch, "on", False) else "inline"
            final_meta_threads.setdefault(path, where)
        write(path, data, durable)

    monkeypatch.setattr(runstore, "atomic_write_bytes", recording_write)
    monkeypatch.setattr(Writer, "_run_batch", recording_batch)

    def adapter(b: RunBindings, pos: Position) -> RunBindings:
        from dataclasses import replace

        return replace(b, cycler=_SlowSafe(b.cycler, delays[pos.name], rec))

    async def main() -> list[Any]:
        async with Scheduler(
            station=INPROCESS_STATION, out_dir=tmp_path, sim=True, adapter=adapter,
        ) as s:  # fmt: skip
            jobs = [s.submit(spec(f"r{i}", STEPS, position=f"ch{i}")) for i in range(3)]
            await asyncio.sleep(1800)
            s.stop(at_once=True, reason="operator stop")
            await s.wait_all()
            return jobs

    jobs = run_virtual_strict(main())
    assert all(j.state is JobState.aborted for j in jobs)
    assert len(rec.safe) >= 3
    # each run's final writes went through its store's writer, never inline in the run
    # while the other runs need the loop for their safe state (on real time the writer
    # runs them on a storage thread: tests/unit/orchestrator/test_store_writer.py; on
    # this simulated time, in its drain task)
    assert sorted(final_meta_threads.values()) == ["writer"] * 3
    for job in jobs:
        assert json.loads((job.run_dir / "run.json").read_text())["state"] == "aborted"
