"""A full disk during a run: detected, reported, the channel in its safe state, no crash."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labrig.orchestrator.events import RunState
from labrig.orchestrator.executor import Executor
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import INPROCESS_STATION
from labrig.protocols.loader import dump_protocol_yaml, load_protocol
from tests.helpers import run_virtual_strict


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 300 kB filesystem (tmpfs); needs root, as on the project's machines and CI."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_fails_the_run_cleanly_in_the_safe_state(tiny_disk: Path) -> None:
    proto = load_protocol("rate_test")
    execs: list[Executor] = []

    async def main() -> Any:
        req = RunRequest(
            protocol=proto,
            protocol_yaml=dump_protocol_yaml(proto),
            out_dir=tiny_disk / "runs",
            station=INPROCESS_STATION,
            durable=True,  # fsync and the staging log: writes as on hardware
        )
        outcome, _root = await execute_run(req, on_executor=execs.append)
        return outcome, await execs[0].bind.cycler.status()

    outcome, status = run_virtual_strict(main())
    assert outcome.state == RunState.failed
    assert "storage failed" in (outcome.reason or "")
    assert "No space left" in outcome.reason or "disk is full" in outcome.reason
    assert status.current_A == 0.0
    assert not list((tiny_disk / "runs").rglob("*.parquet.tmp"))
