"""Large MacNet data chunks take Arrow's CSV reader and small ones a Python reader; each
must read exactly what the strict reader reads, and leave anything it does not accept
to the strict reader."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.capabilities import InstrumentProtocolError
from labrig.drivers.maccor.records import (
    HEADER,
    DataChunk,
    _decode_fast,
    _decode_small,
    _decode_strict,
    decode_data,
)


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
    _assert_same(_decode_fast(text), _decode_strict(text))


def _assert_same(got: DataChunk | None, strict: DataChunk) -> None:
    assert got is not None
    for name in got.__dataclass_fields__:
        a, b = getattr(got, name), getattr(strict, name)
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
        "1001\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\r25\r\n",  # a bare CR inside a row
        "\r\n",  # a blank line
        '1001\t1\t1\t1.0\t0\t0\t0\t0\t3.0\t"C"\t0\t25\r\n',  # a quoted field
    ],
)
def test_odd_rows_leave_the_fast_reader(odd: str) -> None:
    assert _decode_fast(_chunk(3000, odd)) is None


# ---------------------------------------------------------------- a few rows at a time
_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 9),
            st.integers(1, 99),
            _finite,
            _finite,
            _finite,
            _finite,
            st.floats(0, 10),
            _finite,
            st.sampled_from("CDRO"),
            st.sampled_from([0, 129, 193]),
            _finite,
        ),
        max_size=30,
    )
)
def test_small_reader_equals_strict_reader(rows: list[tuple[Any, ...]]) -> None:
    lines, rec = [], 0
    for cyc, step, tt, stt, ah, wh, amps, volts, state, es, temp in rows:
        rec += 1 + cyc % 3
        lines.append(
            f"{rec}\t{cyc}\t{step}\t{tt!r}\t{stt:.3f}\t{ah:.9g}\t{wh:.9g}\t{amps:.9g}\t"
            f"{volts:.6f}\t{state}\t{es}\t{temp:.2f}\r\n"
        )
    text = HEADER + "\r\n" + "".join(lines)
    _assert_same(_decode_small(text), _decode_strict(text))


@pytest.mark.parametrize(
    "odd",
    [
        "1\t1\t1\tnan\t0\t0\t0\t0\t3.0\tC\t0\t25",
        "1\t1\t1\t1e999\t0\t0\t0\t0\t3.0\tC\t0\t25",
        "1\t1\t1\t1.0\t0\t0\t0\t-1\t3.0\tC\t0\t25",
        "1\t-1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\t25",
        "1\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tX\t0\t25",
        "1\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0",
        "0\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\t25",
        "\u0661\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\t25",  # a digit that is not ASCII
        " 1\t1\t1\t1.0\t0\t0\t0\t0\t3.0\tC\t0\t25",
    ],
)
def test_small_reader_defers_anything_unusual(odd: str) -> None:
    text = HEADER + "\r\n" + odd + "\r\n"
    assert _decode_small(text) is None
    try:
        strict = _decode_strict(text)
    except InstrumentProtocolError:
        with pytest.raises(InstrumentProtocolError):
            decode_data(text)
    else:  # what the strict reader accepts, decode_data returns the same way
        got = decode_data(text)
        for name in strict.__dataclass_fields__:
            assert np.array_equal(getattr(got, name), getattr(strict, name), equal_nan=True)
