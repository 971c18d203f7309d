"""kill -9 of a real orchestrator process in the middle of an anneal, while a simulated
Eurotherm (its own process, on the real clock) keeps running its programme: ``labrig
resume`` must re-attach to the programme, go on recording, and lose or repeat no row;
and it must refuse to go on when the controller holds another programme."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from labrig.drivers.capabilities import FurnaceSegment
from labrig.drivers.eurotherm import EurothermFurnace, settings_2400
from labrig.orchestrator.thermal import STAGING_FILE, read_series
from tests.procs import events, furnace_station, kill, run_dir, simulator, start, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# ~40 s of programme on the real clock: a ramp the controller runs on its own
PROTOCOL = """\
name: short anneal drill
limits: {furnace_max_C: 200}
sequence:
  - Ramp furnace to 45 °C at 30 K/min
"""


@pytest.fixture
def controller() -> Iterator[str]:
    with simulator("eurotherm") as address:
        yield address


def _start(args: list[str]) -> subprocess.Popen[str]:
    return start([*args, "-q", "--poll", "0.25"])


def _staged(out: Path) -> list[list[float]]:
    root = run_dir(out)
    path = None if root is None else root / STAGING_FILE
    if path is None or not path.exists():
        return []
    return [json.loads(x) for x in path.read_bytes().splitlines(keepends=True)
            if x.endswith(b"\n")]  # fmt: skip


def _wait_for_rows(out: Path, proc: subprocess.Popen[str], *, more_than: int) -> None:
    """Wait for more staged rows, the newest inside a programme step."""

    def more() -> bool:
        rows = _staged(out)
        return len(rows) > more_than and rows[-1][1] >= 0

    assert wait_until(more, proc=proc), f"no new rows (process ended: {proc.poll()})"


async def _controller_status(address: str) -> str:
    async with EurothermFurnace.from_url(address, 1, settings_2400(), name="f") as f:
        return await f.program_status()


async def _replace_programme(address: str) -> None:
    """What a person at the controller might do while the host is down."""
    async with EurothermFurnace.from_url(address, 1, settings_2400(), name="f") as f:
        await f.safe_state()
        await f.load_program([FurnaceSegment("ramp", 60.0, rate_K_per_s=0.5),
                              FurnaceSegment("dwell", duration_s=120.0)])  # fmt: skip
        await f.run_program()


def _killed_run(tmp_path: Path, controller: str) -> tuple[Path, list[list[float]]]:
    """Start an anneal, kill -9 it once it has staged rows inside the programme: its run
    directory and every row the killed process had recorded."""
    (tmp_path / "anneal.yaml").write_text(PROTOCOL)
    station = furnace_station(tmp_path, controller)
    out = tmp_path / "runs"
    proc = _start(["run", str(tmp_path / "anneal.yaml"), "--station", str(station),
                   "--out", str(out)])  # fmt: skip
    _wait_for_rows(out, proc, more_than=3)
    kill(proc)
    (root,) = list(out.iterdir())
    return root, _staged(out)


def test_a_killed_anneal_resumes_on_the_running_programme(controller: str, tmp_path: Path) -> None:
    root, before = _killed_run(tmp_path, controller)
    assert asyncio.run(_controller_status(controller)) in ("running", "holdback")
    proc = _start(["resume", str(root)])
    assert proc.wait(180) == 0
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "finished", meta.get("reason")
    assert len(meta["resumed"]) == 1
    series = read_series(root)
    t = series["time_s"]
    # nothing lost: the killed process's rows come first, as they were recorded
    assert np.array_equal(t[: len(before)], [row[0] for row in before])
    assert np.array_equal(series["setpoint_C"][: len(before)], [row[2] for row in before])
    # nothing twice, and recording went on after the restart
    assert np.all(np.diff(t) > 0), "a row was recorded twice or out of order"
    assert len(t) > len(before) + 3
    assert not (root / STAGING_FILE).exists()
    journal = events(root)
    assert [e["seq"] for e in journal] == list(range(1, len(journal) + 1))
    kinds = [e["kind"] for e in journal]
    assert kinds.count("run_resumed") == 1 and kinds.count("run_started") == 1
    notes = [e["data"].get("message", "") for e in journal if e["kind"] == "notify"]
    assert any(n.startswith("re-attached to the furnace programme") for n in notes), notes
    # each step starts once: the re-attached run knows which step it was in
    started = [e["data"]["step"] for e in journal if e["kind"] == "step_started"]
    assert started == sorted(set(started)), started
    assert asyncio.run(_controller_status(controller)) == "reset"  # left in its safe state


def test_a_changed_programme_is_refused(controller: str, tmp_path: Path) -> None:
    root, rows = _killed_run(tmp_path, controller)
    asyncio.run(_replace_programme(controller))
    proc = _start(["resume", str(root)])
    assert proc.wait(60) == 1
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "failed"
    assert "another programme" in meta["reason"], meta["reason"]
    assert "ramp 60" in meta["reason"] and "ramp 45" in meta["reason"]
    assert len(read_series(root)["time_s"]) == len(rows)  # what was recorded is kept
    assert asyncio.run(_controller_status(controller)) == "reset"  # left in its safe state
