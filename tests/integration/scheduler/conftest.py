"""Shared pieces of the scheduler tests: short protocols and a scheduler on the sim station."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from labrig.orchestrator.run import RunBindings
from labrig.orchestrator.scheduler import RunSpec
from labrig.orchestrator.station import Position
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text

HEAD = """
name: {name}
cell: {{cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200, counter_electrode: In/InLi}}
limits: {{voltage_V: [1.95, 3.75], current_abs_mA: 5.0}}
defaults: {{record: {{every_s: {every}}}}}
sequence:
"""

CYCLE = ["Charge at 1C until 3.7 V or 2 h", "Discharge at 1C until 2.0 V or 2 h"]
EIS = "EIS from 10 kHz to 0.1 Hz, 5 per decade, 10 mV amplitude at OCV"


def protocol_text(name: str, steps: list[str], every_s: float = 30.0) -> str:
    return HEAD.format(name=name, every=every_s) + "".join(f"  - {s}\n" for s in steps)


def without_impedance(position: str) -> Callable[[RunBindings, Position], RunBindings]:
    """A scheduler adapter that unplugs the impedance channel of ``position``: an EIS run
    there fails (the way a run with a missing instrument fails)."""

    def adapt(b: RunBindings, pos: Position) -> RunBindings:
        return replace(b, impedance=None) if pos.name == position else b

    return adapt


BROKEN = ["Rest for 1 min", EIS]  # fails where there is no impedance channel


def spec(name: str, steps: list[str] | None = None, **kw: Any) -> RunSpec:
    """A RunSpec of a short protocol (one 1C cycle unless ``steps`` are given)."""
    proto = load_protocol_text(protocol_text(name, steps or CYCLE))
    return RunSpec(protocol=proto, protocol_yaml=dump_protocol_yaml(proto), **kw)
