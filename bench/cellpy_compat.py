"""cellpy's MACCOR loader on pandas 3, for bench/import.py.

cellpy 1.0.x splits MACCOR's one unsigned ``Amp-hr`` column into charge and discharge
capacity (and signs ``Amps``) in ``post_processors._state_splitter``, writing each cycle's
values with ``raw[col].update(values, inplace=True)``. pandas 3 has no such keyword (and,
with copy-on-write, an update of ``raw[col]`` would not reach ``raw`` anyway): every cycle
raises, cellpy logs it as a "bad cycle" and carries on, and every capacity comes out 0.
cellpy fixed this upstream (jepegit/cellpy issue 580, pull request 581) in releases that
need Python 3.13; the releases for Python 3.11 still carry it.

:func:`ensure_working_splitter` checks cellpy's splitter on four rows and, if it is the
broken one, puts in its place a splitter that does the same work the same way (for every
cycle, masks over the whole frame for its charge and its discharge rows, then the values
written, and the cycle's last value carried forward) but writes through ``raw.loc``. Only
the write differs, so cellpy's timing stays cellpy's.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

_DEFAULT_STATES = {"column_name": "State", "charge_keys": ["C"], "discharge_keys": ["D"],
                   "rest_keys": ["R"]}  # fmt: skip


def _splitter(
    raw: pd.DataFrame,
    base_col_name: str = "charge_capacity",
    n_charge: float = 1,
    n_discharge: float = 1,
    new_col_name_charge: str = "charge_capacity",
    new_col_name_discharge: str = "discharge_capacity",
    temp_col_name_charge: str = "tmp_charge",
    temp_col_name_discharge: str = "tmp_discharge",
    propagate: bool = True,
    to_numeric: bool = True,
    states: dict[str, Any] | None = None,
) -> pd.DataFrame:
    from cellpy.parameters.internal_settings import headers_normal

    cyc, point = headers_normal.cycle_index_txt, headers_normal.data_point_txt
    st = states or _DEFAULT_STATES
    if to_numeric:
        raw[base_col_name] = pd.to_numeric(raw[base_col_name], errors="coerce")
    raw[temp_col_name_charge] = 0.0
    raw[temp_col_name_discharge] = 0.0
    sides = ((st["charge_keys"], temp_col_name_charge, float(n_charge)),
             (st["discharge_keys"], temp_col_name_discharge, float(n_discharge)))  # fmt: skip
    for number in raw[cyc].unique():
        for keys, tmp, sign in sides:
            rows = raw.loc[raw[st["column_name"]].isin(keys) & (raw[cyc] == number),
                           [point, base_col_name]]  # fmt: skip
            if rows.empty:
                continue
            raw.loc[rows.index, tmp] = sign * rows[base_col_name]
            if propagate:
                last_point, last_value = rows.iloc[-1]
                raw.loc[(raw[point] > last_point) & (raw[cyc] == number), tmp] = last_value
    charge, discharge = raw[temp_col_name_charge], raw[temp_col_name_discharge]
    raw = raw.drop(columns=list({temp_col_name_charge, temp_col_name_discharge}))
    raw[new_col_name_charge] = charge
    if new_col_name_discharge != new_col_name_charge:
        raw[new_col_name_discharge] = discharge
    return raw


def _works(splitter: Any) -> bool:
    from cellpy.parameters.internal_settings import headers_normal as h

    df = pd.DataFrame({h.data_point_txt: [1, 2, 3, 4], h.cycle_index_txt: [1, 1, 1, 1],
                       "State": ["C", "C", "D", "D"],
                       h.charge_capacity_txt: [0.5, 1.0, 0.4, 0.9]})  # fmt: skip
    try:
        out = splitter(df.copy())
    except Exception:  # cellpy's own failure, whatever it is
        return False
    return bool(
        out[h.charge_capacity_txt].max() == 1.0 and out[h.discharge_capacity_txt].max() == 0.9
    )


def ensure_working_splitter() -> str | None:
    """None if cellpy's own splitter works here; else what was put in its place and why."""
    import logging

    from cellpy.readers.instruments.processors import post_processors

    logging.getLogger().setLevel(logging.CRITICAL + 1)  # its "bad cycles" lines, once a cycle
    if _works(post_processors._state_splitter):
        return None
    post_processors._state_splitter = _splitter
    assert _works(post_processors._state_splitter)
    return (f"cellpy {_version()} on pandas {pd.__version__}: its MACCOR state splitter zeroes "
            "every capacity (Series.update(inplace=True), cellpy issue 580); the same loop "
            "writing through .loc (its upstream fix, PR 581) is used instead")  # fmt: skip


def _version() -> str:
    import cellpy

    return str(getattr(cellpy, "__version__", "?"))
