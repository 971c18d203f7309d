"""Options that several commands share, defined once so they accept the same values.

``labrig validate`` checks what ``labrig run`` (and ``labrig submit``) would run: the
same ``--set`` overrides (``cam_mass_mg=9.1`` or ``cell.cam_mass_mg=9.1``, a preset), the
same ``--station`` and ``--position``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..instruments.sim.presets import PRESET_HELP

__all__ = ["PositionOption", "SetOption", "StationOption", "parse_sets"]

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a cell field, e.g. --set cam_mass_mg=9.1 or --set preset=NAME; "
        + PRESET_HELP
        + ".",
    ),
]

StationOption = Annotated[
    Path | None,
    typer.Option("--station", help="Station file (default: built-in simulated station)."),
]

PositionOption = Annotated[
    str | None, typer.Option("--position", help="Station position (default: the first).")
]


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["cam_mass_mg=9.1"]`` -> ``{"cell.cam_mass_mg": "9.1"}`` (a bare key is a cell
    field); a BadParameter for an item without ``=``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--set takes key=value (e.g. cam_mass_mg=9.1), got {item!r}")
        key = key.strip()
        if not key.startswith("cell."):
            key = "cell." + key
        out[key] = value.strip()
    return out
