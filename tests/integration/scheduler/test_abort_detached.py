"""An operator's abort of a run the daemon did not re-attach after a restart (listed
``detached``; its run directory ``paused``, not resumable): the instrument is still
commanded to its safe state when it can be reached, and the run's reason says what was
done; an instrument out of reach is said, and the run is aborted all the same."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from labrig.drivers.capabilities import ChannelState
from labrig.drivers.maccor import MaccorCycler
from labrig.orchestrator.executor import Executor, RunOptions
from labrig.orchestrator.run.bindings import RunBindings
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.scheduler import Scheduler
from labrig.orchestrator.scheduler._jobs import JobState
from labrig.orchestrator.station import StationConfig
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from labrig.simulators.maccor import serve_maccor
from tests.helpers import run_virtual_strict

pytestmark = pytest.mark.timeout(60)

PROTOCOL = """\
name: detached abort
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - repeat: 400
    steps: [Charge at 1C until 3.68 V, Discharge at 1C until 2.28 V]
"""


def _station(url: str) -> StationConfig:
    return StationConfig.model_validate({
        "name": "lab",
        "instruments": {"cycler": {"driver": "maccor", "address": url, "channels": 8}},
        "positions": [{"name": "A1", "cycler": "cycler/0"}],
    })  # fmt: skip


async def _killed_run(out: Path, url: str) -> Path:
    """A run on channel 0, killed (no safe state) during its first block."""
    proto = load_protocol_text(PROTOCOL, source_name="p.yaml")
    execs: list[Executor] = []
    async with MaccorCycler.from_url(url, channels=[0]) as cyc:
        req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=out,
                         station=_station(url), position="A1", sim=False,
                         options=RunOptions(poll_s=60.0), durable=False)  # fmt: skip
        bindings = RunBindings(cycler=cyc.channel(0))
        task = asyncio.ensure_future(execute_run(req, bindings=bindings, on_executor=execs.append))
        await asyncio.wait({task}, timeout=3600.0)
        assert not task.done()
        execs[-1].abandon()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return _only(out)


def _only(out: Path) -> Path:
    (root,) = out.iterdir()
    return root


async def _abort_detached(out: Path, url: str, root: Path) -> tuple[str, str]:
    """A daemon without resume finds the run (detached); the operator aborts it."""
    async with Scheduler(station=_station(url), out_dir=out, sim=False) as s:
        job = s.reattach(root)
        assert job.state is JobState.detached
        said = s.command(job.run_id, "abort")
        await job.done.wait()
        s.stop(at_once=False, reason="test over")
    assert job.state is JobState.aborted
    return said, str(job.reason)


def test_abort_of_a_detached_run_puts_its_instrument_in_its_safe_state(tmp_path: Path) -> None:
    async def main() -> Any:
        async with serve_maccor(1) as srv:
            root = await _killed_run(tmp_path, srv.url)
            async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
                before = (await cyc.channel(0).status()).state
            said, reason = await _abort_detached(tmp_path, srv.url, root)
            async with MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
                after = (await cyc.channel(0).status()).state
            return root, before, after, said, reason

    root, before, after, said, reason = run_virtual_strict(main())
    assert before == ChannelState.running  # the tester carried on without the host
    assert after == ChannelState.idle  # (6,5) reset: the safe state
    assert "safe state" in said
    assert "its instruments were put in their safe state (cycler/0)" in reason, reason
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "aborted" and meta["resumable"] is False
    assert "put in their safe state" in meta["reason"]


def test_abort_of_a_detached_run_whose_instrument_is_gone_says_so(tmp_path: Path) -> None:
    async def main() -> Any:
        async with serve_maccor(1) as srv:
            root = await _killed_run(tmp_path, srv.url)
            url = srv.url
        return root, await _abort_detached(tmp_path, url, root)  # the tester is gone

    root, (_said, reason) = run_virtual_strict(main())
    assert "could not all be put in their safe state" in reason, reason
    assert "check them" in reason
    assert json.loads((root / "run.json").read_text())["state"] == "aborted"
