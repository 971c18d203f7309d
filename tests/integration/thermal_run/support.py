"""Running furnace protocols through ``execute_run`` on the virtual clock, for the tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.thermal import FurnaceExecutor, ThermalOptions, ThermalOutcome, read_series
from labrig.protocols.loader import dump_protocol_yaml, load_protocol
from tests.helpers import run_virtual_strict

FAST = ThermalOptions(poll_s=60.0, safety_period_s=60.0)

# A short anneal: synthetic air, 10 K/min to 400 °C, 2 h, cool at 10 K/min to 300 °C.
SHORT = """\
name: short anneal
cell: {sample_id: "S-1, S-2"}
limits: {furnace_max_C: 430}
sequence:
  - Set gas N2 to 118.5 sccm
  - Set gas O2 to 31.5 sccm and wait 5 min
  - Ramp furnace to 400 °C at 10 K/min
  - Hold furnace for 2 h
  - Cool furnace to 300 °C at 10 K/min
"""


@dataclass
class Result:
    outcome: ThermalOutcome
    root: Path
    ex: FurnaceExecutor
    series: dict[str, Any]
    events: list[dict[str, Any]]
    log: dict[str, Any] = field(default_factory=dict)

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


def run_thermal(
    protocol: str,
    out_dir: Path,
    *,
    options: ThermalOptions = FAST,
    on_progress: Callable[[FurnaceExecutor], None] | None = None,
) -> Result:
    proto = load_protocol(protocol)
    req = RunRequest(
        protocol=proto,
        protocol_yaml=dump_protocol_yaml(proto),
        out_dir=out_dir,
        sim=True,
        options=options,
    )
    holder: list[FurnaceExecutor] = []

    def keep(ex: Any) -> None:
        holder.append(ex)

    outcome, root = run_virtual_strict(
        execute_run(req, on_progress=on_progress, on_executor=keep)  # type: ignore[arg-type]
    )
    assert isinstance(outcome, ThermalOutcome)
    events = [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]
    return Result(outcome, root, holder[0], read_series(root), events)


def at_time(t_s: float, action: Callable[[FurnaceExecutor], None]) -> Callable[[Any], None]:
    """An on_progress hook that runs ``action`` once, at the first record after ``t_s``."""
    done: list[bool] = []

    def hook(ex: Any) -> None:
        if not done and ex.run_time() >= t_s:
            done.append(True)
            action(ex)

    return hook
