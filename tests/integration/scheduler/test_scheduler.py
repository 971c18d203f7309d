"""The scheduler on the built-in simulated station, on the virtual clock."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labrig.orchestrator.events import RunState
from labrig.orchestrator.scheduler import JobState, Scheduler
from labrig.orchestrator.station import INPROCESS_STATION
from tests.helpers import run_virtual_strict

from .conftest import BROKEN, CYCLE, spec, without_impedance


def _events(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "events.jsonl").read_text().splitlines()]


def test_eight_runs_at_once_finish_independently(tmp_path: Path) -> None:
    async def main() -> list[Any]:
        async with Scheduler(
            station=INPROCESS_STATION, out_dir=tmp_path, sim=True, adapter=without_impedance("ch0")
        ) as s:
            # one that fails on purpose (its EIS channel is unplugged) first on ch0
            bad = s.submit(spec("bad", BROKEN, position="ch0"))
            jobs = [s.submit(spec(f"run{i}", position=f"ch{i}", seed=i)) for i in range(8)]
            await s.wait_all()
            return [*jobs, bad]

    jobs = run_virtual_strict(main())
    *good, bad = jobs
    for j in good:
        assert j.state is JobState.finished, (j.run_id, j.reason)
        assert j.outcome is not None and j.outcome.cycles == 1
    starts = {j.started for j in good[1:]}
    assert len(starts) == 1  # seven started together on their own channels
    assert good[0].started is not None and bad.ended is not None
    assert good[0].started >= bad.ended  # ch0's second run went on after the failure
    assert bad.state is JobState.failed and bad.reason


def test_queue_per_channel_is_fifo(tmp_path: Path) -> None:
    async def main() -> list[Any]:
        async with Scheduler(station=INPROCESS_STATION, out_dir=tmp_path, sim=True) as s:
            jobs = [s.submit(spec(f"q{i}", position="ch3")) for i in range(3)]
            assert [j.state for j in s.queue("ch3")] == [JobState.queued] * 3
            await s.wait_all()
            return jobs

    jobs = run_virtual_strict(main())
    assert all(j.state is JobState.finished for j in jobs)
    for a, b in itertools.pairwise(jobs):
        assert a.ended is not None and b.started is not None
        assert b.started >= a.ended  # the next run waited for the previous one to end
    assert jobs[0].started is not None and jobs[2].started is not None
    assert jobs[2].started > jobs[0].started


def test_start_at_is_honoured(tmp_path: Path) -> None:
    async def main() -> Any:
        async with Scheduler(station=INPROCESS_STATION, out_dir=tmp_path, sim=True) as s:
            at = s.clock.wall() + 5 * 3600
            job = s.submit(spec("later", position="ch1", not_before=at))
            other = s.submit(spec("now", position="ch2"))
            await s.wait(other.run_id)
            assert job.state is JobState.waiting and "until" in (job.reason or "")
            await s.wait_all()
            return job, at

    job, at = run_virtual_strict(main())
    assert job.state is JobState.finished
    assert job.started is not None and job.started >= at
    created = json.loads((job.run_dir / "run.json").read_text())["created"]
    assert datetime.fromisoformat(created) <= datetime.now(UTC)


def test_after_is_honoured_and_a_failed_dependency_stops_the_chain(tmp_path: Path) -> None:
    async def main() -> list[Any]:
        async with Scheduler(
            station=INPROCESS_STATION, out_dir=tmp_path, sim=True, adapter=without_impedance("ch7")
        ) as s:
            first = s.submit(spec("first", position="ch0"))
            second = s.submit(spec("second", position="ch5", after=first.run_id))
            broken = s.submit(spec("broken", BROKEN, position="ch7"))
            orphan = s.submit(spec("orphan", position="ch6", after=broken.run_id))
            await s.wait_all()
            return [first, second, broken, orphan]

    first, second, broken, orphan = run_virtual_strict(main())
    assert first.state is second.state is JobState.finished
    assert second.started is not None and first.ended is not None
    assert second.started >= first.ended
    assert broken.state is JobState.failed
    assert orphan.state is JobState.aborted and broken.run_id in (orphan.reason or "")
    assert orphan.executor is None  # never started


def test_pause_resume_abort_of_one_run_leaves_the_others_alone(tmp_path: Path) -> None:
    steps = CYCLE * 3

    async def main() -> list[Any]:
        async with Scheduler(station=INPROCESS_STATION, out_dir=tmp_path, sim=True) as s:
            a = s.submit(spec("a", steps, position="ch0"))
            b = s.submit(spec("b", steps, position="ch1"))
            c = s.submit(spec("c", steps, position="ch2"))
            await s._until(lambda: all(j.executor is not None for j in (a, b, c)))
            s.command(a.run_id, "pause")
            s.command(c.run_id, "abort")
            await s._until(lambda: a.state is JobState.paused)
            paused_at = s.clock.now()
            await s.wait(b.run_id)
            assert a.state is JobState.paused  # still parked while b ran to its end
            s.command(a.run_id, "resume")
            await s.wait_all()
            return [a, b, c, paused_at]

    a, b, c, _t = run_virtual_strict(main())
    assert a.state is JobState.finished and a.outcome is not None and a.outcome.cycles == 3
    assert b.state is JobState.finished and b.outcome is not None and b.outcome.cycles == 3
    assert c.state is JobState.aborted and "operator abort" in (c.reason or "")
    kinds = [e["kind"] for e in _events(a.run_dir)]
    assert "paused" in kinds and "resumed" in kinds
    commands = [e["data"]["command"] for e in _events(a.run_dir) if e["kind"] == "command"]
    assert commands == ["pause", "resume"]
    assert "paused" not in [e["kind"] for e in _events(b.run_dir)]
    assert c.outcome is not None and c.outcome.state is RunState.aborted
