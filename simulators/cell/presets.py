"""Named cells. Plausible literature-style values, not measurements of the lab's cells.

- ``ncm85_ininli`` (default): NCM85 | Li6PS5Cl | In-InLi, ~76–80 % after 1000 1C cycles.
- ``ncm83_sc_coated``: coated single-crystal NCM83, ≈ 88 % after 1000 1C cycles
  (≈ 0.012 % loss per cycle).
- ``ncm83_sc_uncoated``: the same uncoated, ≈ 71 % (≈ 0.029 % per cycle), rate
  capability about 199/190/175/160 mAh/g at 0.1/0.2/0.5/1C (1C = 200 mA/g).
- ``ncm85_lto``: the default cathode against Li4Ti5O12 (window 1.35–2.75 V).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .params import CellParams

__all__ = ["DEFAULT_PRESET", "PRESETS", "preset"]

DEFAULT_PRESET = "ncm85_ininli"

_BASE = CellParams()

PRESETS: dict[str, CellParams] = {
    "ncm85_ininli": _BASE,
    "ncm83_sc_coated": replace(
        _BASE,
        name="ncm83_sc_coated",
        description="coated single-crystal NCM83 | Li6PS5Cl | In-InLi",
        specific_capacity_mAh_g=211.0,
        r_ct_ohm=30.0,
        fade_sqrt=0.0005,
        fade_linear=1.1e-4,
        r_growth_sqrt=0.008,
    ),
    "ncm83_sc_uncoated": replace(
        _BASE,
        name="ncm83_sc_uncoated",
        description="uncoated single-crystal NCM83 | Li6PS5Cl | In-InLi",
        specific_capacity_mAh_g=209.0,
        fade_sqrt=0.001,
        fade_linear=2.9e-4,
        r_growth_sqrt=0.03,
    ),
    "ncm85_lto": replace(
        _BASE,
        name="ncm85_lto",
        description="NCM85 | Li6PS5Cl | Li4Ti5O12 composite",
        anode_potential_V=1.55,
    ),
}


def preset(name: str | None = None, **overrides: Any) -> CellParams:
    """A preset by name (None: the default), with fields replaced by ``overrides``."""
    key = DEFAULT_PRESET if name is None else name
    if key not in PRESETS:
        raise ValueError(f"unknown cell preset {key!r}; known: {', '.join(sorted(PRESETS))}")
    p = PRESETS[key]
    if overrides:
        try:
            p = replace(p, **overrides)
        except TypeError as exc:
            raise ValueError(f"bad override for preset {key!r}: {exc}") from None
    return p
