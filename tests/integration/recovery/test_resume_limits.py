"""After a restart the channel's limits are read back before the run goes on: a 2450
whose voltage compliance was changed while the host was down stops the run in its safe
state; one left alone lets it continue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import pytest

from labrig.drivers.keithley import K2450Channel
from labrig.orchestrator.events import RunState
from labrig.orchestrator.executor import Executor, RunOptions
from labrig.orchestrator.run.bindings import RunBindings
from labrig.orchestrator.runner import RunRequest, execute_run, resume_run
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from labrig.simulators.keithley import serve_k2450
from tests.helpers import run_virtual_strict

PROTOCOL = """
name: resume limits
limits: {voltage_V: [2.0, 3.9], current_abs_mA: 10}
defaults: {record: {every_s: 60}}
sequence:
  - repeat: 2
    steps: [Charge at 3.36 mA until 3.68 V, Discharge at 3.36 mA until 2.5 V]
"""


def _run_dir(out: Path) -> Path:
    (root,) = [p for p in out.iterdir() if p.is_dir()]
    return root


async def _kill_and_resume(
    out: Path, vlim_while_down: float | None
) -> tuple[RunState, str, bool, list[str]]:
    proto = load_protocol_text(PROTOCOL, source_name="limits.yaml")
    options = RunOptions(poll_s=60.0)
    async with serve_k2450(noise=0.0) as srv:
        execs: list[Executor] = []
        async with K2450Channel.from_url(srv.url, poll_s=5.0) as first:
            req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto),
                             out_dir=out, sim=False, options=options, durable=False)  # fmt: skip
            async with asyncio.TaskGroup() as tg:
                run = execute_run(req, bindings=RunBindings(cycler=first), on_executor=execs.append)
                task = tg.create_task(run)
                await asyncio.sleep(1200.0)  # virtual seconds: the first charge runs
                assert srv.smu.output
                execs[-1].abandon()  # as kill -9: no safe state, no final writes
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if vlim_while_down is not None:  # someone at the front panel
            srv.smu.vlim_V = vlim_while_down
        root = _run_dir(out)
        async with K2450Channel.from_url(srv.url, poll_s=5.0) as second:
            outcome, _ = await resume_run(
                root, bindings=RunBindings(cycler=second), options=options, durable=False
            )
        events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
        notes = [e["data"].get("message", "") for e in events if e["kind"] == "notify"]
        assert json.loads((root / "run.json").read_text())["state"] == outcome.state.value
        return outcome.state, outcome.reason or "", srv.smu.output, notes


def test_a_compliance_changed_while_down_stops_the_run_in_its_safe_state(tmp_path: Path) -> None:
    state, reason, output_on, notes = run_virtual_strict(_kill_and_resume(tmp_path, 4.2))
    assert state == RunState.failed
    assert "upper voltage 4.2 V (the protocol's: 3.9 V)" in reason
    assert "the run stops here" in reason
    assert not output_on  # safe state: output off
    assert not any("limits not read back" in n for n in notes)


def test_an_unchanged_compliance_lets_the_run_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="labrig.orchestrator.run.limits")
    state, reason, output_on, notes = run_virtual_strict(_kill_and_resume(tmp_path, None))
    assert "limits read back after the restart: upper voltage as the protocol's" in caplog.text
    assert state == RunState.finished, reason
    assert not any("limits not read back" in n for n in notes)
    assert not output_on


@pytest.mark.parametrize("vlim", [3.9 * 1.0005])
def test_a_difference_within_the_tolerance_of_the_start_goes_on(
    tmp_path: Path, vlim: float
) -> None:
    state, reason, _, _ = run_virtual_strict(_kill_and_resume(tmp_path, vlim))
    assert state == RunState.finished, reason
