"""Shared impedance channel (never two runs at once, waits recorded) and the watchdog."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labrig.drivers.capabilities import ChannelStatus, EisRequest, EisResult, RecordBatch
from labrig.orchestrator.run import RunBindings
from labrig.orchestrator.scheduler import JobState, Scheduler
from labrig.orchestrator.station import InstrumentConfig, Position, StationConfig
from tests.helpers import run_virtual_strict

from .conftest import CYCLE, EIS, spec

SHARED = StationConfig(
    name="shared-eis",
    instruments={
        "cycler": InstrumentConfig(driver="sim", channels=3),
        "eis": InstrumentConfig(driver="sim-eis", channels=1),
    },
    positions=[Position(name=f"c{i}", cycler=f"cycler/{i}", impedance="eis/0") for i in range(3)],
)


@dataclass
class OverlapProbe:
    """Counts runs inside measure_eis of each impedance channel name at the same time."""

    active: dict[str, int] = field(default_factory=dict)
    max_active: int = 0
    sweeps: int = 0
    timelines: list[Any] = field(default_factory=list)
    scheduler: Scheduler | None = None


class ProbedImpedance:
    def __init__(self, inner: Any, probe: OverlapProbe) -> None:
        self.inner = inner
        self.probe = probe

    @property
    def name(self) -> str:
        return str(self.inner.name)

    async def measure_eis(self, request: EisRequest) -> EisResult:
        p = self.probe
        p.active[self.name] = p.active.get(self.name, 0) + 1
        p.max_active = max(p.max_active, p.active[self.name])
        p.sweeps += 1
        try:
            return await self.inner.measure_eis(request)  # type: ignore[no-any-return]
        finally:
            if p.scheduler is not None:  # at the end of a sweep the others are queued
                p.timelines.append(p.scheduler.timeline())
            p.active[self.name] -= 1

    async def measure_ocv(self, duration_s: float) -> float:
        return await self.inner.measure_ocv(duration_s)  # type: ignore[no-any-return]

    async def safe_state(self) -> None:
        await self.inner.safe_state()


def test_contending_runs_never_overlap_and_the_wait_is_recorded(tmp_path: Path) -> None:
    probe = OverlapProbe()

    def adapter(b: RunBindings, _pos: Position) -> RunBindings:
        return replace(b, impedance=ProbedImpedance(b.impedance, probe))

    steps = [EIS, "Rest for 1 min", EIS, *CYCLE]

    async def main() -> list[Any]:
        async with Scheduler(station=SHARED, out_dir=tmp_path, sim=True, adapter=adapter) as s:
            probe.scheduler = s
            jobs = [s.submit(spec(f"eis{i}", steps, position=f"c{i}", seed=i)) for i in range(3)]
            await s.wait_all()
            stats = s.booker.stats()
            return [jobs, stats]

    jobs, stats = run_virtual_strict(main())
    assert all(j.state is JobState.finished for j in jobs), [j.reason for j in jobs]
    assert probe.sweeps == 6
    assert probe.max_active == 1  # the invariant: never two runs on the instrument at once
    waits = []
    for j in jobs:
        events = [json.loads(x) for x in (j.run_dir / "events.jsonl").read_text().splitlines()]
        waits += [e["data"] for e in events if e["kind"] == "wait"]
    assert waits and all(w["resource"] == "impedance:eis/0" and w["seconds"] > 0 for w in waits)
    st = stats["impedance:eis/0"]
    assert st.bookings == 6 and st.waits == len(waits)
    # the predicted timeline while contended: a holder, then the queue in order with
    # expected starts following each other
    crowded = [t for t in probe.timelines if t and len(t[0].slots) == 3]
    assert crowded
    slots = crowded[0][0].slots
    assert slots[0].holding and not slots[1].holding and not slots[2].holding
    assert all(s.expected_s is not None and s.expected_s > 0 for s in slots)
    assert slots[1].expected_start == slots[0].expected_end
    assert slots[2].expected_start == slots[1].expected_end


class FreezingCycler:
    """A cycler channel whose readings freeze at ``at`` (the instrument keeps answering)."""

    def __init__(self, inner: Any, at: float) -> None:
        self.inner = inner
        self.at = at
        self._status: ChannelStatus | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _frozen(self) -> bool:
        return asyncio.get_running_loop().time() >= self.at

    async def status(self) -> ChannelStatus:
        if self._frozen() and self._status is not None:
            return self._status
        self._status = await self.inner.status()
        return self._status

    async def read_records(self, after_seq: int) -> RecordBatch:
        if self._frozen():
            return RecordBatch.empty()
        return await self.inner.read_records(after_seq)  # type: ignore[no-any-return]


def test_frozen_readings_trip_the_watchdog_and_fail_the_run(tmp_path: Path) -> None:
    engines: dict[str, Any] = {}
    freeze_at: dict[str, float] = {}

    def adapter(b: RunBindings, pos: Position) -> RunBindings:
        engines[pos.name] = b.cycler
        if pos.name != "c1":
            return b
        at = asyncio.get_running_loop().time() + 600.0
        freeze_at["t"] = at
        return replace(b, cycler=FreezingCycler(b.cycler, at))

    async def main() -> list[Any]:
        async with Scheduler(station=SHARED, out_dir=tmp_path, sim=True, adapter=adapter) as s:
            healthy = s.submit(spec("healthy", CYCLE, position="c0"))
            frozen = s.submit(spec("frozen", CYCLE, position="c1"))
            await s.wait_all()
            state = engines["c1"].engine.status(asyncio.get_running_loop().time()).state
            return [healthy, frozen, s.watchdog_trips, state]

    healthy, frozen, trips, engine_state = run_virtual_strict(main())
    assert healthy.state is JobState.finished
    assert frozen.state is JobState.failed and "stale data" in (frozen.reason or "")
    assert trips == 1
    assert engine_state != "running"  # the cycler is in its safe state
    events = [json.loads(x) for x in (frozen.run_dir / "events.jsonl").read_text().splitlines()]
    faults = [e for e in events if e["kind"] == "fault"]
    assert faults and "stale data" in faults[0]["data"]["message"]
    assert events[-1]["kind"] == "run_ended" and events[-1]["data"]["state"] == "failed"
    meta = json.loads((frozen.run_dir / "run.json").read_text())
    assert meta["state"] == "failed"
    # detected within three record periods (30 s each) of the freeze, plus one check
    started = next(e for e in events if e["kind"] == "run_started")["wall_time"]
    assert faults[0]["wall_time"] - started <= 600.0 + 3 * 30.0 + 30.0


class SlowHostCycler:
    """The host, not the instrument, is slow: every answer takes ``delay_s`` to arrive."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def status(self) -> ChannelStatus:
        st = await self.inner.status()
        await asyncio.sleep(self.delay_s)
        return st  # type: ignore[no-any-return]

    async def read_records(self, after_seq: int) -> RecordBatch:
        batch = await self.inner.read_records(after_seq)
        await asyncio.sleep(self.delay_s)
        return batch  # type: ignore[no-any-return]


def test_a_host_too_slow_to_look_is_not_a_stale_instrument(tmp_path: Path) -> None:
    """Records every 30 s, but every answer reaches the executor 200 s late: longer than
    the three record periods the watchdog allows. The instrument shows progress in each
    answer, so the run must finish, not fail as stale."""

    def adapter(b: RunBindings, pos: Position) -> RunBindings:
        return replace(b, cycler=SlowHostCycler(b.cycler, 200.0))

    async def main() -> list[Any]:
        async with Scheduler(station=SHARED, out_dir=tmp_path, sim=True, adapter=adapter) as s:
            job = s.submit(spec("slow", CYCLE, position="c0"))
            await s.wait_all()
            return [job, s.watchdog_trips]

    job, trips = run_virtual_strict(main())
    assert trips == 0
    assert job.state is JobState.finished, job.reason
