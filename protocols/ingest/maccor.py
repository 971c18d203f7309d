"""MACCOR text exports, as MacTest (and MIMS Client) write them, and MACCOR's EIS export.

No kept library reads these exports on its own (cellpy and beep read them inside their
own data models, with their own cycle semantics and many dependencies), so this reader is
labrig's own. It is a column map over Arrow's multithreaded CSV reader: a 7 M-row export
is parsed in C, with no Python loop over rows.

Accepted layouts (tab or comma separated, header found by its columns, not its line):

- the MacTest "text export": a ``Today's Date`` line (or a few lines of test details),
  then ``Rec#  Cyc#  Step  Test (Sec)|TestTime  Step (Sec)|StepTime  Amp-hr  Watt-hr
  Amps  Volts  State  ES  DPt Time ...``; ``TestTime`` may be ``"2d 03:04:05.6"``;
- the MIMS Client export: ``Name:``/``Channel:`` lines, then ``Rec  Cycle P  Cycle C
  Step  TestTime  StepTime  Cap. [Ah]  Ener. [Wh]  Current [A]  Voltage [V]  Md  ES ...``;
- the EIS export (``MACCOR, INC.  AC Impedance Test`` ... ``Freq(Hz)  ...  Z'(a)
  Z''(b)``), one sweep per file, read by :mod:`.maccor_eis`.

Semantics: ``Amp-hr`` restarts at every step and is unsigned; ``State`` (or ``Md``) says
C(harge), D(ischarge), R(est); the current's sign is taken from the state where the export
writes it unsigned. The cycle counter is the export's ``Cyc#`` (or ``Cycle C``). The test's
start (``meta["start_datetime"]``, which places EIS sweeps) is the first record's
``DPt Time``, else the ``Date of Test`` line.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..analysis.loader import KIND_CODES
from ._model import IngestError, VendorData
from .maccor_eis import read_maccor_eis
from .normalize import step_counter_increments

__all__ = ["looks_like_maccor", "read_maccor"]

READER = "labrig.maccor"
VERSION = "1"
_HEAD_BYTES = 1 << 16

#: our name -> the export's names (compared lower-cased, spaces squeezed)
_COLUMNS: dict[str, tuple[str, ...]] = {
    "cycle": ("cyc#", "cycle c", "cycle", "cyc", "cycle p"),
    "step": ("step",),
    "time": ("test (sec)", "testtime", "test time", "test time (sec)", "test(sec)",
             "test time (s)"),
    "capacity": ("amp-hr", "cap. [ah]", "capacity (ah)", "cap(ah)", "capacity", "ah"),
    "current": ("amps", "current [a]", "current (a)", "current", "current(a)"),
    "voltage": ("volts", "voltage [v]", "voltage (v)", "voltage", "voltage(v)"),
    "state": ("state", "md", "mode"),
    "temperature": ("temp 1", "temperature", "temp (c)", "temperature (c)"),
}  # fmt: skip
_REQUIRED = ("cycle", "step", "time", "capacity", "current", "voltage", "state")


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower())


def _head_lines(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if b"\x00" in head:
        raise IngestError(path, "a binary file, not a MACCOR text export")
    return head.decode("latin-1").splitlines()


def _find_header(lines: list[str]) -> tuple[int, str, list[str]] | None:
    for k, line in enumerate(lines[:60]):
        for sep in ("\t", ","):
            fields = [_norm(f) for f in line.split(sep)]
            have = set(fields)
            if all(any(a in have for a in _COLUMNS[c]) for c in ("cycle", "step", "voltage")):
                return k, sep, line.split(sep)
    return None


def looks_like_maccor(path: Path) -> bool:
    """True for a MACCOR data or EIS export (the header is in the first lines)."""
    try:
        lines = _head_lines(path)
    except (OSError, IngestError):
        return False
    if lines and lines[0].startswith("MACCOR") and "Impedance" in lines[0]:
        return True
    return _find_header(lines) is not None


def _pick(fields: list[str]) -> dict[str, int]:
    normed = [_norm(f) for f in fields]
    out: dict[str, int] = {}
    for ours, names in _COLUMNS.items():
        for alias in names:
            if alias in normed:
                out[ours] = normed.index(alias)
                break
    return out


_DHMS = r"^(?:(?P<d>\d+)d\s*)?(?:(?P<h>\d+):)?(?:(?P<m>\d+):)?(?P<s>[0-9.eE+-]+)$"


_WEIGHTS = np.array([86400.0, 3600.0, 60.0, 1.0])


def _seconds(col: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Test time as seconds: plain numbers, or MacTest's ``"Nd HH:MM:SS.ffff"``."""
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        return np.asarray(col.to_numpy(), dtype=np.float64)
    text = pc.utf8_trim_whitespace(col.cast(pa.string()))
    fast = _seconds_by_split(text)
    return fast if fast is not None else _seconds_by_regex(text)


def _seconds_by_split(text: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """The common case, five times quicker than the pattern: every value has the same
    fields (``"0d 00:00:5.05"`` -> ``0:00:00:5.05`` -> 4 numbers), none missing."""
    if text.null_count:
        return None
    parts = pc.split_pattern(pc.replace_substring(text, "d ", ":"), ":")
    span = pc.min_max(pc.list_value_length(parts)).as_py()
    k = span["max"]
    if k is None or span["min"] != k or not 1 <= k <= 4:
        return None
    try:
        flat = pc.list_flatten(parts).cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # something else in a field: the pattern says where
    values = np.asarray(flat.to_numpy(), dtype=np.float64).reshape(-1, k)
    out: np.ndarray[Any, np.dtype[np.float64]] = values @ _WEIGHTS[-k:]
    return out


def _seconds_by_regex(text: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Any mix of ``Nd``, ``H:``, ``M:`` prefixes; NaN where a value is not a time."""
    parts = pc.extract_regex(text, _DHMS)
    total: Any = None
    for name, weight in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        field = pc.struct_field(parts, name)
        num = pc.cast(pc.if_else(pc.equal(field, ""), "0", field), pa.float64())
        term = pc.multiply(num, weight)
        total = term if total is None else pc.add(total, term)
    out = np.asarray(total.to_numpy(zero_copy_only=False), dtype=np.float64)
    return out


_META_KEYS = {"today's date": None, "date of test": "test_date", "filename": "test_name",
              "procedure": "procedure", "comment/barcode": "barcode", "name": "test_name",
              "channel": "channel", "tester channel": "channel", "tester": "tester",
              "started": "test_date", "description": "description"}  # fmt: skip
_META_RE = re.compile(
    r"(?i)(?:^|\t|\s)(" + "|".join(re.escape(k) for k in _META_KEYS) + r")(?:\s*:\s*\t?\s*|\t\s*)"
)


def _meta_from_head(lines: list[str]) -> dict[str, Any]:
    """Procedure, test date, test name, channel and barcode from the lines above the header."""
    meta: dict[str, Any] = {}
    for line in lines:
        marks = list(_META_RE.finditer(line))
        for m, nxt in zip(marks, [*marks[1:], None], strict=True):
            key = _META_KEYS.get(m.group(1).lower())
            value = line[m.end() : nxt.start() if nxt else len(line)].strip()
            if key and value and key not in meta:
                meta[key] = value
    return meta


_DPT_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M",
                "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S")  # fmt: skip
_TEST_DATE_FORMATS = ("%d %B %Y, %I:%M:%S %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S")


def _start_datetime(
    lines: list[str], k: int, sep: str, fields: list[str], meta: dict[str, Any]
) -> dt.datetime | None:
    """When the test started: the first record's ``DPt Time``, else the ``Date of Test``
    line where it holds a time of day."""
    normed = [_norm(f) for f in fields]
    first = next((ln for ln in lines[k + 1 : k + 4] if ln.strip()), None)
    if "dpt time" in normed and first is not None:
        cells = first.split(sep)
        i = normed.index("dpt time")
        if i < len(cells):
            for fmt in _DPT_FORMATS:
                try:
                    return dt.datetime.strptime(cells[i].strip(), fmt)
                except ValueError:
                    continue
    for fmt in _TEST_DATE_FORMATS:
        try:
            return dt.datetime.strptime(str(meta.get("test_date", "")).strip(), fmt)
        except ValueError:
            continue
    return None


def _read_table(path: Path, k: int, sep: str, fields: list[str], lines: list[str]) -> pa.Table:
    names = [f"c{i}" for i in range(len(fields))]
    data_lines = [ln for ln in lines[k + 1 : k + 8] if ln.strip()]
    if data_lines:
        extra = len(data_lines[0].split(sep)) - len(fields)
        names += [f"x{i}" for i in range(max(extra, 0))]
    cols = _pick(fields)
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        wanted = ", ".join(_COLUMNS[c][0] for c in missing)
        raise IngestError(path, f"MACCOR export without the column(s) {wanted}")
    types: dict[str, pa.DataType] = {f"c{i}": pa.float64() for i in cols.values()}
    types[f"c{cols['state']}"] = pa.string()
    del types[f"c{cols['time']}"]  # seconds (float) or "Nd HH:MM:SS" (text): Arrow decides
    include = [*types, f"c{cols['time']}"]
    for c in ("cycle", "step"):
        types[f"c{cols[c]}"] = pa.int64()
    convert = pacsv.ConvertOptions(include_columns=include, column_types=types,
                                   strings_can_be_null=True)  # fmt: skip
    parse = pacsv.ParseOptions(delimiter=sep, quote_char=False)
    table = None
    # UTF-8 first: Arrow decodes it natively; other encodings go through Python's codecs
    for encoding in ("utf8", "latin-1"):
        read = pacsv.ReadOptions(skip_rows=k + 1, column_names=names, block_size=1 << 24,
                                 encoding=encoding)  # fmt: skip
        try:
            table = pacsv.read_csv(path, read_options=read, parse_options=parse,
                                   convert_options=convert)  # fmt: skip
            break
        except (pa.ArrowInvalid, OSError) as exc:
            msg = str(exc).splitlines()[0]
            if encoding == "utf8" and "UTF8" in msg.upper().replace("-", ""):
                continue
            raise IngestError(path, f"unreadable MACCOR export ({msg})") from None
    assert table is not None
    return table.rename_columns([_rename(n, cols) for n in table.column_names])


def _rename(col: str, cols: dict[str, int]) -> str:
    for ours, i in cols.items():
        if col == f"c{i}":
            return ours
    return col


def read_maccor(path: Path) -> VendorData:
    """Read a MACCOR text export (data or EIS)."""
    lines = _head_lines(path)
    if lines and lines[0].startswith("MACCOR") and "Impedance" in lines[0]:
        return read_maccor_eis(path, lines)
    found = _find_header(lines)
    if found is None:
        raise IngestError(
            path, "not a MACCOR text export (expected a header line with Cyc#, Step, "
            "Amp-hr, Amps, Volts and State columns in the first lines)")  # fmt: skip
    k, sep, fields = found
    table = _read_table(path, k, sep, fields, lines)
    if table.num_rows == 0:
        raise IngestError(path, "MACCOR export with a header but no records")
    t = _seconds(table.column("time"))
    state = pc.utf8_upper(pc.utf8_trim_whitespace(table.column("state"))).combine_chunks()
    state = pc.utf8_slice_codeunits(pc.fill_null(state, ""), 0, 1)
    is_c = np.asarray(pc.equal(state, "C").to_numpy(zero_copy_only=False), dtype=bool)
    is_d = np.asarray(pc.equal(state, "D").to_numpy(zero_copy_only=False), dtype=bool)
    is_r = np.asarray(pc.equal(state, "R").to_numpy(zero_copy_only=False), dtype=bool)
    amps = np.asarray(table.column("current").to_numpy(), dtype=np.float64)
    amps = np.where(is_c, np.abs(amps), np.where(is_d, -np.abs(amps), amps))
    cyc = np.asarray(table.column("cycle").to_numpy(), dtype=np.int64)
    step = np.asarray(table.column("step").to_numpy(), dtype=np.int64)
    hint = np.zeros(t.shape, dtype=np.int8)
    hint[is_c] = KIND_CODES["charge"]
    hint[is_d] = KIND_CODES["discharge"]
    hint[is_r] = KIND_CODES["rest"]
    change = np.zeros(t.shape, dtype=bool)
    change[1:] = (step[1:] != step[:-1]) | (cyc[1:] != cyc[:-1]) | (hint[1:] != hint[:-1])
    segment = np.cumsum(change)
    sign = np.where(is_c, 1.0, np.where(is_d, -1.0, np.sign(amps)))
    dq = step_counter_increments(table.column("capacity").to_numpy(), segment) * sign
    temp = None
    if "temperature" in table.column_names:
        temp = np.asarray(table.column("temperature").to_numpy(), dtype=np.float64)
    bad = ~np.isfinite(t)
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + k + 2
        raise IngestError(path, f"line {line}: test time is not a number or Nd HH:MM:SS")
    meta = _meta_from_head(lines[:k])
    started = _start_datetime(lines, k, sep, fields, meta)
    if started is not None:
        meta["start_datetime"] = started.isoformat()
    return VendorData(
        path, "MACCOR", READER, VERSION, t, amps,
        np.asarray(table.column("voltage").to_numpy(), dtype=np.float64), dq, cyc, step,
        segment.astype(np.int64), hint, temp, meta=meta,
        cycle_column=fields[_pick(fields)["cycle"]].strip(),
    )  # fmt: skip
