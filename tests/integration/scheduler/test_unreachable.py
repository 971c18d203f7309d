"""An instrument nobody answers for (``tcp://127.0.0.1:1``): a clear error, no traceback,
and no run directory left ``running`` - from ``labrig run`` and from the daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labrig.orchestrator.daemon import DaemonError, DaemonUnavailable, request

from .conftest import CYCLE, protocol_text

pytestmark = pytest.mark.timeout(90)

LABRIG = [sys.executable, "-m", "labrig.orchestrator.cli"]
STATION = """\
name: lab
instruments:
  cycler: {driver: maccor, address: 'tcp://127.0.0.1:1', channels: 8}
positions:
  - {name: A1, cycler: cycler/0}
"""


def _pings(runs: Path) -> bool:
    try:
        return bool(request(runs, {"op": "ping"}).get("ok"))
    except (DaemonUnavailable, DaemonError):
        return False


def _states(runs: Path) -> list[str]:
    return [json.loads(p.read_text())["state"] for p in runs.glob("*/run.json")]


def test_run_with_an_unreachable_instrument_says_so_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.yaml").write_text(protocol_text("unreachable", CYCLE))
    (tmp_path / "station.yaml").write_text(STATION)
    out = tmp_path / "runs"
    done = subprocess.run(
        [*LABRIG, "run", str(tmp_path / "p.yaml"), "--station", str(tmp_path / "station.yaml"),
         "--out", str(out), "-q"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "instrument out of reach" in done.stderr and "127.0.0.1:1" in done.stderr
    assert all(s == "failed" for s in _states(out)), _states(out)


def test_daemon_run_with_an_unreachable_instrument_fails_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "station.yaml").write_text(STATION)
    runs = tmp_path / "runs"
    log = tmp_path / "serve.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [*LABRIG, "serve", "--station", str(tmp_path / "station.yaml"), "--runs", str(runs)],
            stderr=f,
        )
    try:
        deadline = time.monotonic() + 30
        while not _pings(runs):  # the socket listens before the scheduler runs
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        reply = request(runs, {"op": "submit", "protocol_yaml": protocol_text("u", CYCLE)})
        run_id = reply["run_id"]

        def row() -> dict[str, object]:
            rows = request(runs, {"op": "ls"})["runs"]
            return next(r for r in rows if r["run_id"] == run_id)

        while row()["state"] not in ("failed", "finished", "aborted"):
            assert time.monotonic() < deadline + 30
            time.sleep(0.05)
        got = row()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert got["state"] == "failed" and "127.0.0.1:1" in str(got["reason"]), got
    assert "Traceback" not in log.read_text(), log.read_text()
    assert all(s == "failed" for s in _states(runs)), _states(runs)
