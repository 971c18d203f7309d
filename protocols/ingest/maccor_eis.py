"""MACCOR's EIS export, and how it finds the data export of the same test.

MacTest writes a test's records to ``TEST.NNN`` (NNN: the channel) and each impedance
sweep of that test to its own file, ``TEST.EDA0001.NNN``, ``TEST.EDA0002.NNN`` ...; exports
are often renamed ``TEST.NNN.txt``, ``TEST.txt``, ``TEST_EIS.txt``. An EIS export belongs to
a data export when, both names stripped of a text extension and of the channel extension,
the EIS name is the data name followed by ``.``, ``_``, ``-`` or a space (and the channels
agree where both have one). Its sweep is placed in the data's time line by its start time
(the export's ``Start Date`` / ``Start Time`` line) against the data's first record.
"""

from __future__ import annotations

import datetime as dt
import glob
import re
from pathlib import Path
from typing import Any

import numpy as np

from ._model import IngestError, VendorData, VendorSpectrum

__all__ = ["attach_eis", "eis_siblings", "is_maccor_eis", "read_maccor_eis", "same_test"]

READER = "labrig.maccor"
VERSION = "1"
_TEXT_EXT = (".txt", ".csv", ".tsv")
_CHANNEL = re.compile(r"^\.\d{3}$")
_START = re.compile(
    r"Start Date:\s*(?P<date>.+?)\s*Start Time:\s*(?P<time>\d{1,2}:\d{2}(?::\d{2})?)"
)
_MAX_SIBLINGS = 1000


def is_maccor_eis(path: Path) -> bool:
    """True for a MACCOR EIS export (its first line says so)."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return False
    return first.startswith(b"MACCOR") and b"Impedance" in first


def _test_and_channel(path: Path) -> tuple[str, str | None]:
    name = path.name
    if Path(name).suffix.lower() in _TEXT_EXT:
        name = name[: -len(Path(name).suffix)]
    ext = Path(name).suffix
    if _CHANNEL.match(ext):
        return name[: -len(ext)], ext[1:]
    return name, None


def same_test(data: Path, eis: Path) -> bool:
    """Whether ``eis`` is named as an EIS export of the test that ``data`` holds."""
    test, channel = _test_and_channel(data)
    other, other_channel = _test_and_channel(eis)
    if channel and other_channel and channel != other_channel:
        return False
    return len(other) > len(test) and other.startswith(test) and other[len(test)] in "._- "


def eis_siblings(data: Path) -> list[Path]:
    """The EIS exports of ``data``'s test in its folder, sorted by name."""
    test, _ = _test_and_channel(data)
    found: list[Path] = []
    for name in sorted(glob.glob(glob.escape(str(data.parent / test)) + "*")):
        p = Path(name)
        if p != data and p.is_file() and same_test(data, p) and is_maccor_eis(p):
            found.append(p)
            if len(found) >= _MAX_SIBLINGS:
                break
    return found


def _eis_start(lines: list[str]) -> dt.datetime | None:
    """``Start Date:  Wednesday, November 2, 2016 Start Time:   15:58``."""
    for line in lines[:12]:
        m = _START.search(line)
        if not m:
            continue
        date = m.group("date").strip().rstrip(",")
        for fmt in ("%A, %B %d, %Y", "%B %d, %Y", "%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d"):
            for tfmt in ("%H:%M:%S", "%H:%M"):
                try:
                    return dt.datetime.strptime(f"{date} {m.group('time')}", f"{fmt} {tfmt}")
                except ValueError:
                    continue
    return None


def read_maccor_eis(path: Path, lines: list[str]) -> VendorData:
    """One sweep: ``Freq(Hz)``, ``Z'(a)``, ``Z''(b)`` (``lines``: the file's first lines)."""
    import pandas as pd

    start = next((i for i, ln in enumerate(lines) if ln.startswith("Freq(Hz)")), None)
    if start is None:
        raise IngestError(path, "MACCOR EIS export without a 'Freq(Hz)' header line")
    try:
        df = pd.read_csv(path, sep="\t", skiprows=start, encoding="latin-1", engine="c",
                         skip_blank_lines=True)  # fmt: skip
    except (ValueError, OSError) as exc:
        raise IngestError(path, f"unreadable MACCOR EIS export ({exc})") from None
    cols = {re.sub(r"\s+", " ", str(c).strip().lower()): c for c in df.columns}
    if not all(c in cols for c in ("freq(hz)", "z'(a)", "z''(b)")):
        raise IngestError(path, "MACCOR EIS export without Freq(Hz), Z'(a) and Z''(b) columns")
    f, zr, zi = (pd.to_numeric(df[cols[c]], errors="coerce").to_numpy(np.float64)
                 for c in ("freq(hz)", "z'(a)", "z''(b)"))  # fmt: skip
    ok = np.isfinite(f) & np.isfinite(zr) & np.isfinite(zi) & (f > 0)
    if ok.sum() < 3:
        raise IngestError(path, "MACCOR EIS export with fewer than 3 valid frequencies")
    started = _eis_start(lines)
    meta: dict[str, Any] = {
        "technique": lines[1].strip() if len(lines) > 1 else None,
        "procedure": lines[2].strip() if len(lines) > 2 else None,
        "test_name": lines[3].strip() if len(lines) > 3 else None,
        "start_datetime": started.isoformat() if started else None,
    }
    spec_meta = {"technique": meta["technique"], "source_file": path.name,
                 "start_datetime": meta["start_datetime"]}  # fmt: skip
    spec = VendorSpectrum(f[ok], zr[ok], zi[ok], None, None, spec_meta)
    vd = VendorData.spectra_only(path, "MACCOR", READER, VERSION, [spec])
    vd.meta = {k: v for k, v in meta.items() if v}
    return vd


def attach_eis(data: VendorData, eis: list[VendorData]) -> VendorData:
    """``data`` with the sweeps of its test's EIS exports, each timed against the data's
    first record where both start times are known (else left for the importer to place)."""
    t0 = data.meta.get("start_datetime")
    start = dt.datetime.fromisoformat(t0) if isinstance(t0, str) else None
    for vd in eis:
        for spec in vd.spectra:
            s = spec.meta.get("start_datetime")
            if start is not None and isinstance(s, str):
                offset = (dt.datetime.fromisoformat(s) - start).total_seconds()
                spec.time_s = offset + (float(data.time_s[0]) if len(data) else 0.0)
            data.spectra.append(spec)
    return data
