"""SIGINT / SIGTERM to ``labrig run`` at seeded moments, from its first instant on.

Real processes: a simulated MACCOR in its own process (fast real clock) and ``labrig run``.
Whatever the moment, the command says it was interrupted, ``run.json`` (if the run had
begun) holds a final state, and the tester's own channel is not left running.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labrig.drivers.capabilities import ChannelState
from labrig.drivers.maccor import MaccorCycler

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LABRIG = [sys.executable, "-m", "labrig.orchestrator.cli"]

PROTOCOL = """\
name: signal drill
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - label: aging
    repeat: 200
    steps: [Charge at 1C until 3.68 V, Rest for 10 min, Discharge at 1C until 2.28 V]
"""

FINAL = ("finished", "aborted", "failed")


@pytest.fixture
def tester() -> Iterator[str]:
    proc = subprocess.Popen(
        [*LABRIG, "sim", "serve", "maccor", "--port", "0", "--speed", "4000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        yield address
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def _channel_state(address: str, number: int) -> ChannelState:
    async with MaccorCycler.from_url(address, channels=8) as cycler:
        return (await cycler.channel(number).status()).state


def _wait_for_handlers(proc: subprocess.Popen[str]) -> None:
    """Until labrig's first line has run (it catches SIGTERM from then on): before, the
    interpreter itself is starting and a signal ends it the default way."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            return
        caught = next(x for x in status.splitlines() if x.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.002)


def signal_drill(address: str, folder: Path, sig: signal.Signals, delay_s: float,
                 channel: int = 0) -> dict[str, object]:  # fmt: skip
    """Start ``labrig run``, send ``sig`` ``delay_s`` after its first line ran; what
    was left."""
    (folder / "drill.yaml").write_text(PROTOCOL)
    (folder / "station.yaml").write_text(
        "name: lab\n"
        f"instruments:\n  cycler: {{driver: maccor, address: '{address}', channels: 8}}\n"
        f"positions:\n  - {{name: A1, cycler: cycler/{channel}}}\n"
    )
    out = folder / "runs"
    proc = subprocess.Popen(
        [*LABRIG, "run", str(folder / "drill.yaml"), "--station", str(folder / "station.yaml"),
         "--out", str(out), "-q", "--poll", "0.02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    _wait_for_handlers(proc)
    time.sleep(delay_s)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=90)
    runs = list(out.iterdir()) if out.exists() else []
    meta = json.loads((runs[0] / "run.json").read_text()) if runs else None
    return {
        "code": proc.returncode,
        "said": f"interrupted by {sig.name}" in stdout + stderr,
        "output": stdout + stderr,
        "state": None if meta is None else meta["state"],
        "reason": None if meta is None else meta.get("reason"),
        "channel": asyncio.run(_channel_state(address, channel)),
    }


def test_signals_at_seeded_moments_end_with_a_final_state_and_a_safe_channel(
    tester: str, tmp_path: Path
) -> None:
    rng = random.Random(12)
    moments = [(s, rng.uniform(0.0, 6.0)) for s in [signal.SIGINT, signal.SIGTERM] * 3]
    moments += [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.0)]  # while it loads
    started = 0
    for i, (sig, delay) in enumerate(moments):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        got = signal_drill(tester, folder, sig, delay)
        where = f"{sig.name} at {delay:.2f} s: {got}"
        assert got["code"] == 128 + int(sig), where
        assert got["said"], where
        assert "Traceback" not in str(got["output"]), where
        assert got["channel"] is not ChannelState.running, where
        if got["state"] is not None:
            started += 1
            assert got["state"] in FINAL, where
            assert got["state"] == "aborted" and sig.name in str(got["reason"]), where
    assert started >= 1  # some moments fell inside the run
