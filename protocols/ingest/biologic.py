"""BioLogic EC-Lab / BT-Lab files: ``.mpr`` (binary, read by galvani) and ``.mpt`` (text).

``.mpr`` files are read with galvani (``galvani.BioLogic.MPRfile``), the kept reader of the
format. galvani's ``.mpt`` reader parses row by row in Python and needs an exact first
line, so ``.mpt`` files are read here with pandas' C parser (tab separated, latin-1,
decimal point or comma); both then go through the same column map.

Techniques: GCPL, MB (Modulo Bat), CA/CP, OCV give a time series; PEIS and GEIS give one
spectrum per sweep (a new sweep where ``cycle number`` changes or the frequency jumps back
up). Semantics: BioLogic's current is positive for oxidation at the working electrode,
which charges a cell with the working electrode as positive: labrig's sign, unchanged.
``dq/mA.h`` (charge per record) is the counted charge; without it ``(Q-Qo)/mA.h`` is
differenced, and without either the current is integrated. ``mode`` 1/2/3 is CC/CV/rest.
The vendor cycle is ``cycle number`` where the file has it, else ``half cycle``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..analysis.loader import KIND_CODES
from ._model import IngestError, VendorData, VendorSpectrum
from .normalize import integrate_current

__all__ = ["read_mpr", "read_mpt"]

READER_MPT = "labrig.biologic_mpt"
VERSION_MPT = "1"
MPR_MAGIC = b"BIO-LOGIC MODULAR FILE"
MPT_MAGIC = ("EC-Lab ASCII FILE", "BT-Lab ASCII FILE")

Cols = dict[str, npt.NDArray[Any]]


def _first(cols: Cols, *names: str) -> npt.NDArray[np.float64] | None:
    for n in names:
        if n in cols:
            return np.asarray(cols[n], dtype=np.float64)
    return None


def _spectra(path: Path, cols: Cols) -> list[VendorSpectrum]:
    f = _first(cols, "freq/Hz")
    zr = _first(cols, "Re(Z)/Ohm")
    mzi = _first(cols, "-Im(Z)/Ohm")
    if f is None or zr is None or mzi is None:
        raise IngestError(path, "impedance file without freq/Hz, Re(Z)/Ohm and -Im(Z)/Ohm")
    cyc = _first(cols, "cycle number")
    t = _first(cols, "time/s")
    new = np.zeros(f.shape, dtype=bool)
    if f.size:
        new[0] = True
        new[1:] = f[1:] > f[:-1] * 1.0001  # a sweep runs from high to low frequency
        if cyc is not None:
            new[1:] |= cyc[1:] != cyc[:-1]
    starts = np.flatnonzero(new)
    out: list[VendorSpectrum] = []
    for s, e in zip(starts, [*starts[1:], f.size], strict=True):
        sl = slice(int(s), int(e))
        ok = np.isfinite(f[sl]) & np.isfinite(zr[sl]) & np.isfinite(mzi[sl]) & (f[sl] > 0)
        if ok.sum() < 3:
            continue
        src = int(cyc[s]) if cyc is not None and np.isfinite(cyc[s]) else None
        t0 = float(t[s]) if t is not None else None
        out.append(VendorSpectrum(f[sl][ok], zr[sl][ok], -mzi[sl][ok], src, t0))
    if not out:
        raise IngestError(path, "impedance file without a sweep of 3 or more valid points")
    return out


def _series(path: Path, cols: Cols, mode: npt.NDArray[Any] | None) -> dict[str, Any]:
    t = _first(cols, "time/s")
    v = _first(cols, "Ewe/V", "<Ewe>/V", "Ecell/V", "<Ecell>/V")
    if t is None or v is None:
        raise IngestError(path, "BioLogic file without time/s and Ewe/V (or Ecell/V) columns")
    n = t.shape[0]
    ns = _first(cols, "Ns")
    step = np.zeros(n, np.int64) if ns is None else ns.astype(np.int64)
    half = _first(cols, "half cycle")
    cyc = _first(cols, "cycle number")
    cycle_column = "cycle number" if cyc is not None else "half cycle"
    src = cyc if cyc is not None else half
    source_cycle = np.zeros(n, np.int64) if src is None else src.astype(np.int64)
    hint = np.zeros(n, np.int8)
    if mode is not None:
        hint[mode == 3] = KIND_CODES["rest"]
        hint[mode == 2] = KIND_CODES["hold"]
    change = np.zeros(n, dtype=bool)
    for key in (step, hint, half if half is not None else step):
        change[1:] |= key[1:] != key[:-1]
    segment = np.cumsum(change).astype(np.int64)
    i_ma = _first(cols, "I/mA", "<I>/mA")
    dq_mah = _first(cols, "dq/mA.h", "dQ/mA.h")
    if dq_mah is None:
        qq = _first(cols, "(Q-Qo)/mA.h", "Q-Qo/mA.h")
        if qq is not None:
            dq_mah = np.diff(qq, prepend=qq[:1])
    dt = np.diff(t, prepend=t[:1])
    if i_ma is None and dq_mah is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            i_ma = np.where(dt > 0, dq_mah * 3600.0 / dt, 0.0)
    if i_ma is None:  # OCV: the potential alone
        i_ma = np.zeros(n)
        hint[:] = KIND_CODES["ocv"]
    current = i_ma * 1e-3
    dq = dq_mah * 1e-3 if dq_mah is not None else integrate_current(t, current, segment)
    temp = _first(cols, "Temperature/°C", "T/°C", "Temperature/ÂºC")
    return dict(time_s=t, current_A=current, voltage_V=v, dq_Ah=np.nan_to_num(dq),
                source_cycle=source_cycle, source_step=step, segment=segment,
                kind_hint=hint, temperature_C=temp, cycle_column=cycle_column)  # fmt: skip


def _vendor_data(
    path: Path, cols: Cols, mode: npt.NDArray[Any] | None, reader: str, version: str,
    meta: dict[str, Any],
) -> VendorData:  # fmt: skip
    if "freq/Hz" in cols:
        vd = VendorData.spectra_only(path, "BioLogic", reader, version, _spectra(path, cols))
        vd.meta = meta
        return vd
    parts = _series(path, cols, mode)
    return VendorData(path=path, vendor="BioLogic", reader=reader, reader_version=version,
                      meta=meta, **parts)  # fmt: skip


def read_mpr(path: Path) -> VendorData:
    """Read an EC-Lab ``.mpr`` file with galvani."""
    from importlib import metadata

    from galvani import BioLogic

    with open(path, "rb") as fh:
        magic = fh.read(len(MPR_MAGIC))
    if magic != MPR_MAGIC:
        raise IngestError(path, "not a BioLogic .mpr file (expected 'BIO-LOGIC MODULAR FILE')")
    try:
        with open(path, "rb") as fh:  # galvani leaves a file it opened itself unclosed
            mpr = BioLogic.MPRfile(fh)
        data = mpr.data
        cols: Cols = {name: np.asarray(data[name]) for name in data.dtype.names or ()}
        mode = mpr.get_flag("mode") if "mode" in mpr.flags_dict else None
    except (ValueError, AssertionError, KeyError, IndexError, EOFError, OSError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IngestError(
            path, f"damaged or truncated BioLogic .mpr file (galvani: {why})"
        ) from None
    meta: dict[str, Any] = {}
    start = getattr(mpr, "timestamp", None) or getattr(mpr, "startdate", None)
    if start is not None:
        meta["test_date"] = str(start)
    return _vendor_data(path, cols, mode, "galvani", metadata.version("galvani"), meta)


_NB_HEADER = re.compile(r"Nb header lines\s*:\s*(\d+)")
_MASS = re.compile(r"(?:Mass of active material|Characteristic mass)\s*:\s*([0-9.,]+)\s*(mg|g)")


def _mpt_meta(head: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if len(head) > 3 and head[3].strip():
        meta["technique"] = head[3].strip()
    for line in head:
        if line.startswith("Acquisition started on"):
            meta["test_date"] = line.split(":", 1)[1].strip()
        elif line.startswith("Run on channel"):
            meta["channel"] = line.split(":", 1)[1].strip()
        m = _MASS.search(line)
        if m and "cam_mass_mg" not in meta:
            mass = float(m.group(1).replace(",", "."))
            if mass > 0.0011:  # EC-Lab writes 0.001 (g or mg) when nothing was entered
                meta["cam_mass_mg"] = mass * (1000.0 if m.group(2) == "g" else 1.0)
    return meta


def read_mpt(path: Path) -> VendorData:
    """Read an EC-Lab ``.mpt`` text export."""
    import pandas as pd

    with open(path, "rb") as fh:
        raw = fh.read(1 << 16)
    head = raw.decode("latin-1").splitlines()
    if not head or (head[0].strip() not in MPT_MAGIC and "time/s" not in head[0]):
        raise IngestError(path, "not a BioLogic .mpt file (expected 'EC-Lab ASCII FILE')")
    skip = 0
    if head[0].strip() in MPT_MAGIC:
        m = _NB_HEADER.search(head[1] if len(head) > 1 else "")
        if not m:
            raise IngestError(path, "line 2: expected 'Nb header lines : N'")
        skip = int(m.group(1)) - 1
    if skip >= len(head):
        raise IngestError(path, f"header of {skip + 1} lines, longer than the file's start")
    first = head[skip + 1] if len(head) > skip + 1 else ""
    decimal = "," if ("," in first and "." not in first) else "."
    try:
        df = pd.read_csv(path, sep="\t", skiprows=skip, encoding="latin-1", decimal=decimal,
                         engine="c", low_memory=False)  # fmt: skip
    except (ValueError, OSError) as exc:
        raise IngestError(path, f"unreadable .mpt data ({str(exc).splitlines()[0]})") from None
    df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]]
    cols: Cols = {}
    for c in df.columns:
        name = str(c).strip().replace("Â°", "°").replace("\xb5", "µ")
        cols[name] = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
    mode = cols.get("mode")
    return _vendor_data(path, cols, mode, READER_MPT, VERSION_MPT, _mpt_meta(head[:skip]))
