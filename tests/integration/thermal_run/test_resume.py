"""A furnace run stopped mid-anneal as if killed (nothing more written, no safe state)
while the controller keeps running its programme, then resumed from its directory: on
the virtual clock, against a Eurotherm simulator that outlives the run."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from labrig.drivers.capabilities import FurnaceSegment
from labrig.drivers.eurotherm import EurothermFurnace, settings_2400
from labrig.orchestrator.events import RunState
from labrig.orchestrator.runner import RunRequest, execute_run, resume_run
from labrig.orchestrator.station import load_station
from labrig.orchestrator.thermal import (
    STAGING_FILE,
    FurnaceExecutor,
    ThermalOptions,
    ThermalOutcome,
    read_series,
)
from labrig.protocols.loader import dump_protocol_yaml, load_protocol
from labrig.simulators.furnace import start_eurotherm_sim
from tests.helpers import run_virtual_strict
from tests.procs import furnace_station

OPTIONS = ThermalOptions(poll_s=60.0, safety_period_s=60.0)

ANNEAL = """\
name: resumed anneal
limits: {furnace_max_C: 430}
sequence:
  - Ramp furnace to 400 °C at 10 K/min
  - Hold furnace for 2 h
  - Cool furnace to 300 °C at 10 K/min
"""


@contextlib.asynccontextmanager
async def _furnace_station(tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    """A simulated controller serving on loopback, and a station naming it (hardware)."""
    sim = await start_eurotherm_sim(limit_C=455.0)
    async with sim:
        yield load_station(furnace_station(tmp_path, sim.address)), sim.address


ENDS_HOT = """\
name: ends hot
limits: {furnace_max_C: 230}
sequence:
  - Ramp furnace to 200 °C at 10 K/min
  - Hold furnace for 30 min
"""


def _request(station: Any, out: Path, protocol: str = ANNEAL) -> RunRequest:
    proto = load_protocol(protocol)
    return RunRequest(
        protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=out, station=station,
        position="tube1", sim=False, durable=False, options=OPTIONS,
    )  # fmt: skip


async def _run_until(
    req: RunRequest, stop: Callable[[FurnaceExecutor], bool]
) -> tuple[FurnaceExecutor, Path]:
    """Run ``req`` until ``stop(executor)`` holds at a record, then stop it as if killed."""
    execs: list[FurnaceExecutor] = []
    reached = asyncio.Event()

    def on_progress(ex: Any) -> None:
        if stop(ex):
            reached.set()

    task = asyncio.ensure_future(
        execute_run(req, on_progress=on_progress, on_executor=execs.append)
    )
    waiter = asyncio.ensure_future(reached.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    assert not task.done(), task.result()
    execs[0].abandon()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await waiter
    (root,) = list(req.out_dir.iterdir())
    return execs[0], root


async def _status(address: str) -> str:
    async with EurothermFurnace.from_url(address, 1, settings_2400(), name="f") as f:
        return await f.program_status()


def _events(root: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]


def _staged_times(root: Path) -> list[float]:
    return [json.loads(x)[0] for x in (root / STAGING_FILE).read_text().splitlines()]


def test_a_run_killed_in_the_dwell_resumes_on_the_same_programme(tmp_path: Path) -> None:
    async def body() -> tuple[ThermalOutcome, Path, list[float], str]:
        async with _furnace_station(tmp_path) as (station, address):
            _, root = await _run_until(
                _request(station, tmp_path / "runs"), lambda e: e.run_time() > 3600.0
            )
            before = _staged_times(root)
            status = await _status(address)
            outcome, root = await resume_run(root, options=OPTIONS, durable=False)
            assert isinstance(outcome, ThermalOutcome)
            return outcome, root, before, status

    outcome, root, before, status = run_virtual_strict(body())
    assert status == "running"  # the controller went on while the host was down
    assert outcome.state == RunState.finished, outcome.reason
    t = read_series(root)["time_s"]
    assert np.array_equal(t[: len(before)], before)  # nothing lost
    assert np.all(np.diff(t) > 0)  # nothing twice
    assert t[-1] > 2.8 * 3600  # on to the end of the cool (ramp, 2 h, cool: 2.9 h)
    events = _events(root)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    steps = [(e["kind"], e["data"]["step"]) for e in events
             if e["kind"] in ("step_started", "step_ended")]  # fmt: skip
    assert steps == [("step_started", 0), ("step_ended", 0), ("step_started", 1),
                     ("step_ended", 1), ("step_started", 2), ("step_ended", 2)]  # fmt: skip
    assert [e["kind"] for e in events].count("run_resumed") == 1
    assert outcome.summary["state"] == "finished"
    assert not (root / STAGING_FILE).exists()


def test_a_programme_changed_while_the_host_was_down_is_refused(tmp_path: Path) -> None:
    async def body() -> tuple[ThermalOutcome, Path, int, str]:
        async with _furnace_station(tmp_path) as (station, address):
            _, root = await _run_until(
                _request(station, tmp_path / "runs"), lambda e: e.run_time() > 1800.0
            )
            rows = len(_staged_times(root))
            async with EurothermFurnace.from_url(address, 1, settings_2400()) as f:
                await f.safe_state()
                await f.load_program([FurnaceSegment("ramp", 350.0, rate_K_per_s=0.1)])
                await f.run_program()
            outcome, root = await resume_run(root, options=OPTIONS, durable=False)
            assert isinstance(outcome, ThermalOutcome)
            return outcome, root, rows, await _status(address)

    outcome, root, rows, status = run_virtual_strict(body())
    assert outcome.state == RunState.failed
    assert outcome.reason is not None and "another programme" in outcome.reason
    assert "ramp 350 @0.1 K/s" in outcome.reason and "ramp 400" in outcome.reason
    assert status == "reset"  # the run ends with the furnace in its safe state
    assert len(read_series(root)["time_s"]) == rows  # nothing recorded after the refusal
    assert json.loads((root / "run.json").read_text())["state"] == "failed"


def test_a_programme_held_when_the_host_died_stays_held_until_resumed(tmp_path: Path) -> None:
    def paused(ex: FurnaceExecutor) -> bool:
        if ex.run_time() > 1800.0 and ex.state is RunState.running:
            ex.request_pause()
        return ex.state is RunState.paused

    async def body() -> tuple[ThermalOutcome, list[str]]:
        async with _furnace_station(tmp_path) as (station, address):
            _, root = await _run_until(_request(station, tmp_path / "runs"), paused)
            seen: list[str] = [await _status(address)]
            resumed: list[FurnaceExecutor] = []

            def on_progress(ex: Any) -> None:
                if ex.state is RunState.paused and not seen[1:]:
                    seen.append("paused")
                    ex.request_resume()

            outcome, _ = await resume_run(
                root, options=OPTIONS, durable=False, on_progress=on_progress,
                on_executor=resumed.append,
            )  # fmt: skip
            assert isinstance(outcome, ThermalOutcome)
            return outcome, seen

    outcome, seen = run_virtual_strict(body())
    assert seen == ["hold", "paused"]
    assert outcome.state == RunState.finished, outcome.reason


def test_a_run_killed_while_it_cools_down_at_the_end_cools_on(tmp_path: Path) -> None:
    def cooling(ex: FurnaceExecutor) -> bool:
        return ex.current_step is not None and ex.current_step.index == -1

    async def body() -> tuple[ThermalOutcome, Path, list[float]]:
        async with _furnace_station(tmp_path) as (station, _):
            _, root = await _run_until(_request(station, tmp_path / "runs", ENDS_HOT), cooling)
            before = _staged_times(root)
            outcome, root = await resume_run(root, options=OPTIONS, durable=False)
            assert isinstance(outcome, ThermalOutcome)
            return outcome, root, before

    outcome, root, before = run_virtual_strict(body())
    assert outcome.state == RunState.finished, outcome.reason
    series = read_series(root)
    assert np.array_equal(series["time_s"][: len(before)], before)
    assert np.all(np.diff(series["time_s"]) > 0)
    assert series["temperature_C"][-1] <= 50.0  # it went on cooling to the end threshold
    steps = [(e["kind"], e["data"]["step"]) for e in _events(root)
             if e["kind"] in ("step_started", "step_ended")]  # fmt: skip
    assert steps == [("step_started", 0), ("step_ended", 0), ("step_started", 1),
                     ("step_ended", 1)]  # fmt: skip
