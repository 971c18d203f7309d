"""The daemon: control socket round trip, CLI clients, SIGTERM once and twice (real clock)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.orchestrator.daemon import Daemon
from labrig.orchestrator.daemon._wire import decode, encode
from labrig.orchestrator.station import INPROCESS_STATION

from .conftest import protocol_text

FAST_EIS = "EIS from 10 kHz to 100 Hz, 5 per decade, 10 mV amplitude at OCV"
# blocks of about a second of real time, split by quick EIS sweeps
SHORT = [
    "Charge at 1C until 3.7 V or 1 s",
    FAST_EIS,
    "Discharge at 1C until 2.0 V or 1 s",
    FAST_EIS,
    "Charge at 1C until 3.7 V or 1 s",
]
LONG = ["Charge at 0.1C until 3.7 V or 10 h"]


async def _ask(path: Path, msg: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(encode(msg))
        await writer.drain()
        return decode(await reader.readline())
    finally:
        writer.close()
        await writer.wait_closed()


async def test_control_socket_round_trip(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    d = Daemon(station=INPROCESS_STATION, runs_dir=runs, sim=True, install_signals=False)
    sock = runs / "labrig.sock"
    async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
        tg.create_task(d.run(), name="daemon")
        await d.ready.wait()
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        pong = await _ask(sock, {"op": "ping"})
        assert pong["ok"] and pong["station"] == "sim-inprocess" and pong["pid"] == os.getpid()
        bad = await _ask(sock, {"op": "explode"})
        assert not bad["ok"] and "unknown op" in bad["error"]
        refused = await _ask(sock, {"op": "submit", "protocol_yaml": "name: x\nsequence: []\n"})
        assert not refused["ok"] and refused["error"]
        short = await _ask(
            sock,
            {"op": "submit", "protocol_yaml": protocol_text("short", SHORT[:1], 0.5)},
        )
        assert short["ok"] and short["position"]
        queued = await _ask(
            sock,
            {
                "op": "submit",
                "protocol_yaml": protocol_text("later", LONG),
                "position": short["position"],
            },
        )
        listing = await _ask(sock, {"op": "ls"})
        states = {r["run_id"]: r["state"] for r in listing["runs"]}
        assert states[queued["run_id"]] == "queued"
        aborted = await _ask(sock, {"op": "abort", "run": queued["run_id"]})
        assert aborted["ok"] and "queue" in aborted["message"]
        nosuch = await _ask(sock, {"op": "pause", "run": "nope"})
        assert not nosuch["ok"] and "no run" in nosuch["error"]
        assert d.scheduler is not None
        job = await d.scheduler.wait(short["run_id"])
        assert job.state.value == "finished"
        listing = await _ask(sock, {"op": "ls"})
        states = {r["run_id"]: r["state"] for r in listing["runs"]}
        assert states == {short["run_id"]: "finished", queued["run_id"]: "aborted"}
        d.signal("test")
    assert not sock.exists()
    meta = json.loads((runs / short["run_id"] / "run.json").read_text())
    assert meta["state"] == "finished"


def _inprocess_station(folder: Path) -> Path:
    """The in-process simulated station as a file (scheduling is under test, not wires)."""
    path = folder / "station-inprocess.yaml"
    path.write_text(yaml.safe_dump(INPROCESS_STATION.model_dump(mode="json")))
    return path


def _serve(runs: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labrig.orchestrator.cli",
            "serve",
            "--sim",
            "--runs",
            str(runs),
            "--station",
            str(_inprocess_station(runs.parent)),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    # the socket listens before the scheduler runs: wait for an answer to a ping
    while not (runs / "labrig.sock").exists() or _cli(runs, "ls").exit_code != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"daemon did not start: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


def _cli(runs: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--runs", str(runs)])
    return result


def _wait_for(pred: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _state(runs: Path, run_id: str) -> dict[str, Any]:
    r = _cli(runs, "ls", "--json")
    assert r.exit_code == 0, r.output
    return next(x for x in json.loads(r.stdout)["runs"] if x["run_id"] == run_id)


@pytest.mark.timeout(60)
def test_cli_clients_and_sigterm_twice(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    long_p = tmp_path / "long.yaml"
    long_p.write_text(protocol_text("long", LONG))
    assert _cli(runs, "ls").exit_code == 3  # no daemon yet: a clear error, not a traceback
    proc = _serve(runs)
    try:
        r = _cli(runs, "submit", str(long_p), "--cell", "A-17", "--position", "ch2")
        assert r.exit_code == 0, r.output
        run_id = r.stdout.strip().splitlines()[-1]
        r2 = _cli(runs, "submit", str(long_p), "--cell", "A-18", "--after", run_id)
        assert r2.exit_code == 0, r2.output
        dep_id = r2.stdout.strip().splitlines()[-1]
        assert _cli(runs, "submit", str(long_p), "--cell", "x", "--after", "nope").exit_code == 1
        assert _cli(runs, "submit", "nope.yaml", "--cell", "x").exit_code == 2
        _wait_for(lambda: _state(runs, run_id)["state"] == "running")
        assert _state(runs, dep_id)["state"] == "waiting"
        table = _cli(runs, "ls")
        assert "ch2" in table.stdout and "running" in table.stdout
        assert _cli(runs, "pause", run_id).exit_code == 0
        assert _cli(runs, "pause", "no-such-run").exit_code == 1
        logs = _cli(runs, "logs", run_id)
        # (the command is recorded in time order with what the instrument did: while the
        # block runs it waits for the block's step ends; it is in the log by the end)
        assert logs.exit_code == 0 and "run_started" in logs.stdout
        meta = json.loads((runs / run_id / "run.json").read_text())
        assert meta["cell"]["cell_id"] == "A-17"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert took < 10
    meta = json.loads((runs / run_id / "run.json").read_text())
    assert meta["state"] == "aborted" and "twice" in meta["reason"], meta
    events = [json.loads(x) for x in (runs / run_id / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "notify" and "twice" in events[-1]["data"]["message"]
    assert any(e["kind"] == "command" and e["data"]["command"] == "pause" for e in events)
    queue = json.loads((runs / "queue.json").read_text())
    assert [q["run_id"] for q in queue] == [dep_id]  # not started: kept for the next start


@pytest.mark.timeout(60)
def test_sigterm_once_pauses_at_a_safe_point_and_a_restart_takes_the_run_back(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    short_p = tmp_path / "short.yaml"
    short_p.write_text(protocol_text("short", SHORT, 0.5))
    proc = _serve(runs)
    try:
        r = _cli(runs, "submit", str(short_p), "--cell", "B-1", "--position", "ch0")
        assert r.exit_code == 0, r.output
        run_id = r.stdout.strip().splitlines()[-1]
        _wait_for(lambda: _state(runs, run_id)["state"] == "running")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    meta = json.loads((runs / run_id / "run.json").read_text())
    assert meta["state"] == "paused" and meta["resumable"] is True, meta
    kinds = [
        json.loads(x)["kind"] for x in (runs / run_id / "events.jsonl").read_text().splitlines()
    ]
    assert kinds[-1] == "paused" and "run_ended" not in kinds
    # a new daemon takes the run back on its channel
    proc = _serve(runs)
    try:
        # a dry run's simulated instruments died with the first daemon: the fresh ones
        # hold other limits, which the resume reads back and refuses
        ended = ("running", "finished", "detached", "failed")
        _wait_for(lambda: _state(runs, run_id)["state"] in ended)
        row = _state(runs, run_id)
        assert row["position"] == "ch0"
        if row["state"] == "failed":
            assert "limits" in str(row["reason"]), row
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    meta = json.loads((runs / run_id / "run.json").read_text())
    if row["state"] != "detached":  # resume is there: the run was resumed
        assert meta.get("resumed"), meta
