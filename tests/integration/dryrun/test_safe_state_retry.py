"""A safe-state command whose answer comes too late (a host too busy to read it) is
sent again: the run still ends with its channel at zero current, and no fault."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from labrig.orchestrator.events import RunState
from labrig.orchestrator.instruments.sim.cell import SimCell
from labrig.orchestrator.instruments.sim.inprocess import SimCyclerChannel
from labrig.orchestrator.run import RunBindings
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from tests.helpers import run_virtual_strict

PROTOCOL = """
name: long charge
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 5}
sequence:
  - Charge at 0.1C until 3.7 V
"""


class LateFirstAnswer:
    """The first safe-state call answers after 60 s; later ones at once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def safe_state(self) -> None:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(60.0)
        await self.inner.safe_state()


def test_a_late_safe_state_answer_is_asked_again(tmp_path: Path) -> None:
    proto = load_protocol_text(PROTOCOL, source_name="long.yaml")

    async def main() -> tuple[Any, LateFirstAnswer, str]:
        loop = asyncio.get_running_loop()
        engine = SimCell(proto.cell, seed=0).engine
        cycler = LateFirstAnswer(SimCyclerChannel("ch0", engine))
        req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=tmp_path)
        execs: list[Any] = []
        task = asyncio.create_task(
            execute_run(req, bindings=RunBindings(cycler=cycler), on_executor=execs.append)
        )
        await asyncio.sleep(3600.0)
        task.cancel()  # the run is stopped at once: straight to the safe state
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return execs[0].state, cycler, engine.status(loop.time()).state

    state, cycler, engine_state = run_virtual_strict(main())
    (root,) = list(tmp_path.iterdir())
    assert state == RunState.aborted
    assert cycler.calls >= 2
    assert engine_state != "running"
    events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["kind"] == "fault"]
