"""The data-file chunk format used to collect records over MacNet.

MacNet's JSON functions include no "read records" call; the documented way to get data
off the tester is the file transfer pair (1,6)/(1,7). We therefore read the running
test's data file with (1,7), addressed by record number so that a reader can always
resume exactly after ``LastRecNum``-style positions (no record lost or read twice):

request  ``params``: ``FileName`` (the TestName), ``Offset`` (last record already held),
         ``Len`` (how many records at most)
reply    ``result``: ``FileName``, ``Offset``, ``Len`` (records returned), ``Data``

``Data`` is tab-separated text in the MACCOR ASCII export layout, one header line then
one line per record, lines ending ``\\r\\n``::

    Rec#  Cyc#  Step  TestTime  StepTime  Amp-hr  Watt-hr  Amps  Volts  State  ES  Temp1

``Step`` is the 1-based procedure step, ``Amp-hr``/``Watt-hr`` count from the start of
the step, ``Amps`` is a magnitude with ``State`` saying C(harge), D(ischarge), R(est) or
O(ther), ``ES`` is the end status (0, or the RF2-style code on the record that ended a
step). This chunk layout is our reading of the export format; check it on the unit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from labrig.drivers.capabilities import InstrumentProtocolError

__all__ = ["DATA_COLUMNS", "DataChunk", "decode_data"]

DATA_COLUMNS = (
    "Rec#",
    "Cyc#",
    "Step",
    "TestTime",
    "StepTime",
    "Amp-hr",
    "Watt-hr",
    "Amps",
    "Volts",
    "State",
    "ES",
    "Temp1",
)
HEADER = "\t".join(DATA_COLUMNS)
_STATE_SIGN = {"C": 1.0, "D": -1.0, "R": 0.0, "O": 0.0}


@dataclass(slots=True)
class DataChunk:
    """Decoded records; ``current_A`` and ``step_charge_Ah`` are signed (+ charges)."""

    rec: npt.NDArray[np.int64]
    cycle: npt.NDArray[np.int64]
    step: npt.NDArray[np.int64]
    test_time_s: npt.NDArray[np.float64]
    step_time_s: npt.NDArray[np.float64]
    step_charge_Ah: npt.NDArray[np.float64]
    step_energy_Wh: npt.NDArray[np.float64]
    current_A: npt.NDArray[np.float64]
    voltage_V: npt.NDArray[np.float64]
    es: npt.NDArray[np.int64]
    temperature_C: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.rec.shape[0])


def decode_data(text: str, *, command: bytes = b"") -> DataChunk:
    """Parse a ``Data`` text; anything malformed raises :class:`InstrumentProtocolError`.

    Large, well-formed chunks go through Arrow's CSV reader; whatever it does not accept
    exactly as expected is parsed (and, if malformed, rejected) by the strict reader.
    """
    if len(text) > 60_000:  # below ~1000 rows the strict reader is as quick
        fast = _decode_fast(text)
        if fast is not None:
            return fast
    elif len(text) < 12_000:  # a few records (a collection every second or so)
        small = _decode_small(text)
        if small is not None:
            return small
    return _decode_strict(text, command=command)


_NUM = r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_ROW = re.compile(
    r"(\d+)\t(\d+)\t(\d+)\t" + "\\t".join([_NUM] * 6) + r"\t([CDRO])\t(\d+)\t" + _NUM,
    re.ASCII,
)


def _decode_small(text: str) -> DataChunk | None:
    """A few rows, read in Python: the same reading as the strict reader for rows of
    plain numbers, or None (anything else goes to the strict reader)."""
    lines = text.split("\r\n")
    if len(lines) < 2 or lines[0] != HEADER or lines[-1] != "":
        return None
    rows: list[tuple[int | float, ...]] = []
    last = 0
    for line in lines[1:-1]:
        m = _ROW.fullmatch(line)
        if m is None:
            return None
        g = m.groups()
        rec = int(g[0])
        nums = [float(x) for x in g[3:9]]
        temp = float(g[11])
        if rec <= last or nums[4] < 0 or not all(map(math.isfinite, nums)) or math.isinf(temp):
            return None
        last = rec
        sign = _STATE_SIGN[g[9]]
        cur_sign = 1.0 if sign == 0.0 else sign
        rows.append(
            (rec, int(g[1]), int(g[2]), nums[0], nums[1], nums[2] * cur_sign,
             nums[3] * cur_sign, nums[4] * sign, nums[5], int(g[10]), temp)
        )  # fmt: skip
    cols = list(zip(*rows, strict=True)) if rows else [()] * 11
    i64, f64 = np.int64, np.float64
    return DataChunk(
        rec=np.array(cols[0], dtype=i64),
        cycle=np.array(cols[1], dtype=i64),
        step=np.array(cols[2], dtype=i64),
        test_time_s=np.array(cols[3], dtype=f64),
        step_time_s=np.array(cols[4], dtype=f64),
        step_charge_Ah=np.array(cols[5], dtype=f64),
        step_energy_Wh=np.array(cols[6], dtype=f64),
        current_A=np.array(cols[7], dtype=f64),
        voltage_V=np.array(cols[8], dtype=f64),
        es=np.array(cols[9], dtype=i64),
        temperature_C=np.array(cols[10], dtype=f64),
    )


_INT_COLS = ("Rec#", "Cyc#", "Step", "ES")
_FLOAT_COLS = ("TestTime", "StepTime", "Amp-hr", "Watt-hr", "Amps", "Volts", "Temp1")
_ARROW_TYPES = {
    **dict.fromkeys(_INT_COLS, pa.int64()), **dict.fromkeys(_FLOAT_COLS, pa.float64()),
    "State": pa.string(),
}  # fmt: skip
_STATES = pa.array(list(_STATE_SIGN))
_STATE_VALUES = np.array(list(_STATE_SIGN.values()))


def _decode_fast(text: str) -> DataChunk | None:
    """The same reading as :func:`_decode_strict` for clean input, or None to defer to it."""
    if not text.startswith(HEADER + "\r\n"):
        return None
    try:
        table = pacsv.read_csv(
            pa.py_buffer(text.encode("ascii")),
            read_options=pacsv.ReadOptions(column_names=list(DATA_COLUMNS), skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types=_ARROW_TYPES, strings_can_be_null=False, null_values=[],
                quoted_strings_can_be_null=False,
            ),
        )  # fmt: skip
    except (pa.ArrowInvalid, UnicodeEncodeError):
        return None
    n = table.num_rows
    # a bare CR or LF would make Arrow see more rows, a blank line fewer: either way
    # the count of CRLF line ends no longer matches
    if n != text.count("\r\n") - 1:
        return None
    cols = {name: table.column(name) for name in DATA_COLUMNS}
    if any(cols[c].null_count for c in DATA_COLUMNS):
        return None
    floats = {c: cols[c].to_numpy() for c in _FLOAT_COLS}
    if not all(np.all(np.isfinite(floats[c])) for c in _FLOAT_COLS):
        return None  # the strict reader says which value is wrong
    # exact matches only: anything else (a longer or unknown State) defers to the strict reader
    where = pc.index_in(cols["State"], value_set=_STATES)
    if where.null_count:
        return None
    sign = _STATE_VALUES[where.to_numpy()]
    rec = cols["Rec#"].to_numpy()
    amps = floats["Amps"]
    if (
        np.any(np.isnan(sign))
        or np.any(amps < 0)
        or (n and (rec[0] < 1 or np.any(rec[1:] <= rec[:-1])))
    ):
        return None
    cur_sign = np.where(sign == 0.0, 1.0, sign)
    return DataChunk(
        rec=rec,
        cycle=cols["Cyc#"].to_numpy(),
        step=cols["Step"].to_numpy(),
        test_time_s=floats["TestTime"],
        step_time_s=floats["StepTime"],
        step_charge_Ah=floats["Amp-hr"] * cur_sign,
        step_energy_Wh=floats["Watt-hr"] * cur_sign,
        current_A=amps * sign,
        voltage_V=floats["Volts"],
        es=cols["ES"].to_numpy(),
        temperature_C=floats["Temp1"],
    )


def _decode_strict(text: str, *, command: bytes = b"") -> DataChunk:

    def bad(why: str) -> InstrumentProtocolError:
        return InstrumentProtocolError(f"MacNet data {why}", command=command, reply=text[:300])

    lines = text.split("\r\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != HEADER:
        raise bad("does not start with the expected header")
    rows = lines[1:]
    n = len(rows)
    width = len(DATA_COLUMNS)
    cells = "\t".join(rows).split("\t") if n else []
    if len(cells) != n * width:
        raise bad(f"has rows that are not {width} tab-separated fields")
    try:
        # one C-level conversion per column from its slice of the cell list: several
        # times faster than converting a 2-D string array
        ints = [np.array(cells[j::width], dtype=np.int64) for j in (0, 1, 2, 10)]
        floats = [np.array(cells[j::width], dtype=np.float64) for j in (3, 4, 5, 6, 7, 8)]
        temp = np.array(cells[11::width], dtype=np.float64)
    except (ValueError, OverflowError) as exc:
        raise bad(f"has a field that is not a number ({exc})") from None
    if n and not all(np.all(np.isfinite(f)) for f in floats):
        raise bad("has a non-finite number")
    if np.any(np.isinf(temp)):
        raise bad("has an infinite temperature")
    states = np.array(cells[9::width], dtype=np.str_) if n else np.empty(0, dtype="U1")
    sign = np.full(n, np.nan)
    for letter, value in _STATE_SIGN.items():
        sign[states == letter] = value
    if np.any(np.isnan(sign)):
        raise bad(f"has an unknown State {str(states[np.isnan(sign)][0])!r}")
    rec, cycle, step, es = ints
    test_time, step_time, amp_hr, watt_hr, amps, volts = floats
    if n and (np.any(np.diff(rec) <= 0) or rec[0] < 1):
        raise bad("record numbers are not increasing from 1")
    if np.any(amps < 0):
        raise bad("has a negative Amps (it is a magnitude)")
    # rest records may carry a tiny leakage current: keep its size, sign by State only
    cur_sign = np.where(sign == 0.0, 1.0, sign)
    return DataChunk(
        rec=rec,
        cycle=cycle,
        step=step,
        test_time_s=test_time,
        step_time_s=step_time,
        step_charge_Ah=amp_hr * cur_sign,
        step_energy_Wh=watt_hr * cur_sign,
        current_A=amps * sign,
        voltage_V=volts,
        es=es,
        temperature_C=temp,
    )


def encode_data_row(
    rec: int,
    cycle: int,
    step: int,
    test_time_s: float,
    step_time_s: float,
    amp_hr: float,
    watt_hr: float,
    amps: float,
    volts: float,
    state: str,
    es: int,
    temp: float,
) -> str:
    """One data line (for tests and table fixtures)."""
    return (
        f"{rec}\t{cycle}\t{step}\t{test_time_s!r}\t{step_time_s!r}\t{amp_hr!r}\t{watt_hr!r}"
        f"\t{amps!r}\t{volts!r}\t{state}\t{es}\t{temp!r}"
    )
