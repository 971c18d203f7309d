"""The hardware path never imports a simulator: a station is opened through the
registry for hardware, in a process of its own, against a MACCOR simulator that another
process serves (``labrig sim serve maccor --port 0``); then that process's
``sys.modules`` holds no ``labrig.simulators`` module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import maccor_station, simulator

OPEN_AND_REPORT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    from labrig.drivers.capabilities import ChannelLimits
    from labrig.orchestrator.runner import bind_instruments
    from labrig.orchestrator.station import load_station

    async def main():
        station = load_station(Path(sys.argv[1]))
        position = station.position("A1")
        async with bind_instruments(station, position, None, sim=False, seed=0) as b:
            limits = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)
            await b.cycler.set_limits(limits)
            got = await b.cycler.get_limits()
            status = await b.cycler.status()
            return {
                "channel": b.cycler.name,
                "limits_match": got.matches(limits),
                "state": str(status.state),
            }

    report = asyncio.run(main())
    loaded = [m for m in sys.modules if m.startswith("labrig.simulators")]
    report["simulator_modules"] = sorted(loaded)
    print(json.dumps(report))
    """
)


@pytest.fixture
def served_maccor() -> Iterator[str]:
    with simulator("maccor") as address:
        yield address


def test_opening_a_station_for_hardware_imports_no_simulator(
    served_maccor: str, tmp_path: Path
) -> None:
    assert served_maccor.startswith("tcp://127.0.0.1:")
    station = maccor_station(tmp_path, served_maccor, channel=3)
    out = subprocess.run(
        [sys.executable, "-c", OPEN_AND_REPORT, str(station)],
        capture_output=True,
        text=True,
        timeout=90.0,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["channel"] == "cycler/3"  # the lab's driver, reached over the wire
    assert report["limits_match"] is True
    assert report["state"] == "idle"
    assert report["simulator_modules"] == []


def test_loading_the_registry_and_a_station_imports_no_simulator() -> None:
    code = (
        "import sys; import labrig.orchestrator.runner, labrig.orchestrator.station, "
        "labrig.orchestrator.instruments, labrig.orchestrator.thermal, labrig.orchestrator.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('labrig.simulators')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60.0, check=True
    )
    assert out.stdout.strip() == "[]"
