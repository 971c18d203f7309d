"""Raw BL_GetData buffers to typed columns: a pure decoder.

A buffer holds ``NbRows`` rows of ``NbCols`` 32-bit words. Time rows start with two
words, ``t_high`` and ``t_low``: time = ``TimeBase * ((t_high << 32) + t_low)`` seconds
from the technique's start, to which the data info's ``StartTime`` is added. Other words
are float32 bit patterns (what BL_ConvertNumericIntoSingle does), except counters such
as ``cycle``, which are plain integers. The column layout depends on the technique, on
the process (EIS: 0 while the DC level settles, 1 for the points), and for EIS on the
family (the VMP3 family appends the current range). Anything that matches no known
layout is an :class:`InstrumentProtocolError`, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import InstrumentProtocolError

from ._structs import BUFFER_WORDS, Family, TechniqueId

__all__ = ["LAYOUTS", "Columns", "decode", "layout"]

Kind = Literal["thi", "tlo", "f32", "u32", "skip"]
Columns = dict[str, npt.NDArray[np.float64]]
Layout = tuple[tuple[str, Kind], ...]

_TIME: tuple[tuple[str, Kind], ...] = (("t_high", "thi"), ("t_low", "tlo"))
_DC = (*_TIME, ("Ewe_V", "f32"), ("I_A", "f32"), ("cycle", "u32"))
_EIS1: tuple[tuple[str, Kind], ...] = (
    ("freq_Hz", "f32"), ("abs_Ewe_V", "f32"), ("abs_I_A", "f32"), ("phase_Zwe", "f32"),
    ("Ewe_V", "f32"), ("I_A", "f32"), ("blank0", "skip"), ("abs_Ece_V", "f32"),
    ("abs_Ice_A", "f32"), ("phase_Zce", "f32"), ("Ece_V", "f32"), ("blank1", "skip"),
    ("blank2", "skip"), ("time_s", "f32"),
)  # fmt: skip
_EIS0 = (*_TIME, ("Ewe_V", "f32"), ("I_A", "f32"))
_OCV = (*_TIME, ("Ewe_V", "f32"))
_CV = (*_TIME, ("Ec_V", "f32"), ("I_A", "f32"), ("Ewe_V", "f32"), ("cycle", "u32"))

#: (technique, process, family or None for both) -> the layouts accepted, by column count
LAYOUTS: dict[tuple[TechniqueId, int, Family | None], tuple[Layout, ...]] = {
    (TechniqueId.OCV, 0, None): (_OCV, (*_OCV, ("Ece_V", "f32"))),
    (TechniqueId.CP, 0, None): (_DC,),
    (TechniqueId.CA, 0, None): (_DC,),
    (TechniqueId.CPLIMIT, 0, None): (_DC,),
    (TechniqueId.CALIMIT, 0, None): (_DC,),
    (TechniqueId.CV, 0, None): (_CV,),
    (TechniqueId.PEIS, 0, None): (_EIS0,),
    (TechniqueId.GEIS, 0, None): (_EIS0,),
    (TechniqueId.PEIS, 1, Family.SP300): (_EIS1,),
    (TechniqueId.GEIS, 1, Family.SP300): (_EIS1,),
    (TechniqueId.PEIS, 1, Family.VMP3): ((*_EIS1, ("I_range", "u32")),),
    (TechniqueId.GEIS, 1, Family.VMP3): ((*_EIS1, ("I_range", "u32")),),
}  # fmt: skip


def layout(
    technique_id: int, process: int, family: Family, ncols: int
) -> tuple[tuple[str, Kind], ...]:
    """The column layout for a buffer, or :class:`InstrumentProtocolError`."""
    try:
        tid = TechniqueId(technique_id)
    except ValueError:
        raise InstrumentProtocolError(f"data of unknown technique id {technique_id}") from None
    options = LAYOUTS.get((tid, process, family)) or LAYOUTS.get((tid, process, None))
    if options is None:
        raise InstrumentProtocolError(f"no data layout for {tid.name} process {process}")
    for cols in options:
        if len(cols) == ncols:
            return cols
    known = sorted(len(c) for c in options)
    raise InstrumentProtocolError(
        f"{tid.name} process {process} rows have {ncols} columns; this driver knows "
        f"{known} for the {family.name} family (check the model's family and firmware)"
    )


def decode(
    words: Sequence[int] | npt.NDArray[np.uint32],
    *,
    rows: int,
    cols: int,
    technique_id: int,
    process: int,
    family: Family,
    timebase_s: float,
    start_time_s: float = 0.0,
) -> Columns:
    """Columns of one buffer: ``time_s`` (seconds), values in V, A, Hz; counters as
    floats holding integers. ``words`` is the whole buffer (extra words are ignored)."""
    if rows < 0 or cols < 1 or rows * cols > BUFFER_WORDS:
        raise InstrumentProtocolError(f"data info says {rows} rows of {cols} columns")
    spec = layout(technique_id, process, family, cols)
    raw = np.asarray(words, dtype=np.uint32)[: rows * cols]
    if raw.size < rows * cols:
        raise InstrumentProtocolError(f"buffer holds {raw.size} words, expected {rows * cols}")
    grid = raw.reshape(rows, cols)
    out: Columns = {}
    hi: npt.NDArray[np.uint64] | None = None
    for k, (name, kind) in enumerate(spec):
        col = grid[:, k]
        if kind == "thi":
            hi = col.astype(np.uint64)
        elif kind == "tlo":
            assert hi is not None
            ticks = (hi << np.uint64(32)) + col.astype(np.uint64)
            out["time_s"] = start_time_s + timebase_s * ticks.astype(np.float64)
        elif kind == "f32":
            # a signalling NaN's bits become a quiet NaN: not an error of the cast
            with np.errstate(invalid="ignore"):
                out[name] = col.view(np.float32).astype(np.float64)
        elif kind == "u32":
            out[name] = col.astype(np.float64)
    return out
