"""Large MacNet data chunks take Arrow's CSV reader; it must read exactly what the strict
reader reads, and leave anything it does not accept to the strict reader."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.capabilities import InstrumentProtocolError
from drivers.maccor.records import HEADER, _decode_fast, _decode_strict, decode_data


def _chunk(n: int, bad_row: str | None = None) -> str:
    rows = []
    for i in range(1, n + 1):
        st = "C" if i < n // 2 else ("R" if i < n // 2 + 10 else "D")
        es = 193 if i in (n // 2 - 1, n) else 0
        amps = 0.0 if st == "R" else 0.0016
        step = 1 if st == "C" else 2
        rows.append(
            f"{i}\t1\t{step}\t{i * 10.0:.3f}\t{(i % 700) * 10.0:.3f}\t{i * 1e-6:.9g}\t"
            f"{i * 3e-6:.9g}\t{amps:.9g}\t{3.0 + i * 1e-4:.6f}\t{st}\t{es}\t25.00\r\n"
        )
    if bad_row is not None:
        rows[n // 3] = bad_row
    return HEADER + "\r\n" + "".join(rows)


def test_fast_reader_equals_strict_reader() -> None:
    text = _chunk(3000)
    fast, strict = _decode_fast(text), _decode_strict(text)
    assert fast is not None
    for name in fast.__dataclass_fields__:
        a, b = getattr(fast, name), getattr(strict, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


@pytest.mark.parametrize(
    "bad",
    [
        "1001\t1\t1\tnan\t0\t0\t0\t0\t3.0\tC\t0\t25\r\n",  # non-finite
        "1001\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tX\t0\t25\r\n",  # unknown state
        "1001\t1\t1\t1.0\t0\t0\t0\t-1\t3.0\tC\t0\t25\r\n",  # negative Amps
        "1001\t1\t1\t1.0\t0\t0\r\n",  # short row
        "5\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\t25\r\n",  # record numbers go back
        "1001\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tCC\t0\t25\r\n",  # State of two letters
        "1001\t1\t1\t1.0\t0\t0\t0\t0\t3.0\t\t0\t25\r\n",  # empty State
        "1001\t1\t1\t1.5\t0\t0\t0\t0\t\tC\t0\t25\r\n",  # empty number
        "1001\t1.5\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\t25\r\n",  # fractional cycle
        "1001\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\t25\t7\r\n",  # a field too many
    ],
)
def test_bad_rows_in_large_chunks_are_still_rejected(bad: str) -> None:
    text = _chunk(3000, bad)
    assert len(text) > 60_000
    assert _decode_fast(text) is None
    with pytest.raises(InstrumentProtocolError):
        decode_data(text)


@pytest.mark.parametrize(
    "odd",
    [
        "1001\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\t25\n",  # a bare LF line end
        '1001\t1\t1\t1.0\t0\t0\t0\t0\t3.0\t"C"\t0\t25\r\n',  # a quoted field
    ],
)
def test_odd_rows_leave_the_fast_reader(odd: str) -> None:
    assert _decode_fast(_chunk(3000, odd)) is None
