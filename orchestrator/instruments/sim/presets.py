"""What the commands say about the simulated cell: its presets and where it rests.

Part of the simulated station (the only orchestrator code that imports the simulators).

The preset names are written out here for the help texts (importing the simulator to
list them would slow every ``labrig`` command); a test keeps the two lists equal.
"""

from __future__ import annotations

from typing import Any

from labrig.protocols.models import CellSpec

__all__ = ["PRESET_HELP", "PRESET_NAMES", "check_preset", "rest_voltage_warnings"]

PRESET_NAMES = ("ncm85_ininli", "ncm83_sc_coated", "ncm83_sc_uncoated", "ncm85_lto")
PRESET_HELP = (
    "cell.preset picks the simulated cell: ncm85_ininli (default; NCM85 vs In/InLi), "
    "ncm83_sc_coated, ncm83_sc_uncoated (single-crystal NCM83), ncm85_lto (vs LTO; the "
    "default when counter_electrode is LTO)"
)


def check_preset(cell: CellSpec | None) -> None:
    """ValueError naming the presets when the protocol's ``cell.preset`` is not one."""
    name = None if cell is None else cell.preset
    if name is None or name in PRESET_NAMES:
        return
    from labrig.simulators.cell import PRESETS

    known = "; ".join(f"{k} ({p.description})" for k, p in sorted(PRESETS.items()))
    raise ValueError(f"cell.preset {name!r} is not a simulated cell; the presets are: {known}")


def _sim_rest_voltage(cell: Any) -> tuple[str, float]:
    from labrig.simulators.cell import CellModel

    from .cell import sim_cell_params

    params = sim_cell_params(cell)
    model = CellModel(params)
    return params.name, float(model.rest_voltage(model.fresh_state()))


def rest_voltage_warnings(protocol: Any) -> list[str]:
    """Warn when the simulated cell, as built, rests outside ``limits.voltage_V``: a dry
    run would stop at once (the cycler's limit) before the first step."""
    window = protocol.limits.voltage_V
    if window is None or not protocol.drives_cell():
        return []
    try:
        check_preset(protocol.cell)
        name, v = _sim_rest_voltage(protocol.cell)
    except ValueError as exc:
        return [str(exc)]
    lo, hi = window
    if lo <= v <= hi:
        return []
    side, edge = ("below the lower", lo) if v < lo else ("above the upper", hi)
    return [
        f"the simulated cell (preset {name}) rests at {v:.3g} V as built, {side} limit "
        f"{edge:g} V of limits.voltage_V [{lo:g}, {hi:g}]: a dry run (--sim) stops before "
        "step 1. Widen the window to hold the rest voltage, or choose another preset."
    ]
