"""One PC without an MQTT broker: the lab page comes from the scheduler daemon's runs and
from the run directories (a run of another station; a run whose process died)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from .support import STATION, daemon, serving, submit, wait_until, web_config


def _stale_run(runs: Path) -> str:
    """A run left 'running' by a ``labrig run`` that died an hour ago."""
    run_id = "20260101-000000-died-S9-0badc0de"
    root = runs / run_id
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({
        "run_id": run_id, "station": "bench-x", "position": "p1", "state": "running",
        "created": "2026-01-01T00:00:00+00:00", "protocol": {"name": "gitt"},
        "cell": {"cell_id": "S9"}}))  # fmt: skip
    (root / "events.jsonl").write_text(json.dumps({
        "run_id": run_id, "channel": "p1", "seq": 1, "kind": "run_started",
        "wall_time": time.time() - 3600, "run_time_s": 0.0, "data": {}}) + "\n")  # fmt: skip
    hour_ago = time.time() - 3600
    for f in (root / "run.json", root / "events.jsonl"):
        os.utime(f, (hour_ago, hour_ago))
    return run_id


async def _rows(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in (await c.get("/api/lab")).json()["rows"]}


async def test_without_a_broker_the_lab_comes_from_the_daemon_and_the_run_directories(
    finished_run: tuple[Path, str], tmp_path: Path
) -> None:
    done_runs, done = finished_run
    runs = tmp_path / "runs"
    shutil.copytree(done_runs / done, runs / done)
    died = _stale_run(runs)
    key = f"labrig/{STATION}/ch3"
    async with (
        daemon(runs, None) as d,
        serving(web_config(runs, None, auth=False)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as c,
    ):
        me = (await c.get("/api/me")).json()
        assert me["connections"]["mqtt"] is None
        await wait_until(lambda: _has(c, key, "idle"))  # an idle position of the daemon
        rows = await _rows(c)
        finished = rows["labrig/sim-inprocess/ch0"]  # another station's run, from its files
        assert (finished["state"], finished["run_state"], finished["run_id"]) == (
            "idle",
            "finished",
            done,
        )
        stale = rows["labrig/bench-x/p1"]
        assert (stale["state"], stale["stale"], stale["cell_id"], stale["run_id"]) == (
            "running", True, "S9", died)  # fmt: skip
        run_id = submit(d, ["Rest for 1 s", "Charge at 1C until 3.7 V or 8 s"], "ch3", "N3")
        await wait_until(lambda: _has(c, key, "running", reading=True), within_s=40)
        running = (await _rows(c))[key]
        assert running["run_id"] == run_id and running["cell_id"] == "N3" and not running["stale"]
        assert running["last_event"]  # the daemon's recent events
        live = (await c.get(f"/api/runs/{run_id}/series")).json()["live"]
        assert live and all(len(p) == 4 for p in live)  # readings for the run page's plot
        await wait_until(lambda: _has(c, key, "idle"), within_s=60)
        ended = (await _rows(c))[key]
        assert (ended["run_state"], ended["run_id"]) == ("finished", run_id)


async def _has(c: httpx.AsyncClient, key: str, state: str, reading: bool = False) -> bool:
    row = (await _rows(c)).get(key)
    return row is not None and row["state"] == state and (
        not reading or row["voltage_V"] is not None)  # fmt: skip
