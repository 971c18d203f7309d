"""The data decoder against buffers built here, independently, from the documented rows."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.biologic import decode
from labrig.drivers.biologic._structs import Family
from labrig.drivers.capabilities import InstrumentProtocolError

TB = 24e-6


def f32(x: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", x))[0])


def as_f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def time_words(ticks: int) -> list[int]:
    return [ticks >> 32, ticks & 0xFFFFFFFF]


def test_cplimit_rows() -> None:
    rows = [
        [*time_words(0), f32(3.2), f32(0.001), 0],
        [*time_words(2**33 + 5), f32(3.3), f32(0.001), 4],
    ]
    words = [w for r in rows for w in r]
    c = decode(words, rows=2, cols=5, technique_id=155, process=0, family=Family.SP300,
               timebase_s=TB, start_time_s=100.0)  # fmt: skip
    assert c["time_s"].tolist() == [100.0, 100.0 + TB * (2**33 + 5)]
    assert c["Ewe_V"].tolist() == [as_f32(3.2), as_f32(3.3)]
    assert c["I_A"].tolist() == [as_f32(1e-3)] * 2 and c["cycle"].tolist() == [0.0, 4.0]


def test_ocv_rows_with_and_without_ece() -> None:
    three = [*time_words(10), f32(2.9)]
    four = [*time_words(10), f32(2.9), f32(0.1)]
    a = decode(
        three, rows=1, cols=3, technique_id=100, process=0, family=Family.VMP3, timebase_s=TB
    )
    b = decode(
        four, rows=1, cols=4, technique_id=100, process=0, family=Family.SP300, timebase_s=TB
    )
    assert a["Ewe_V"][0] == b["Ewe_V"][0] == as_f32(2.9) and b["Ece_V"][0] == as_f32(0.1)


def _eis_row(f: float, e: float, i: float, ph: float, t: float, irange: int | None) -> list[int]:
    row = [f32(f), f32(e), f32(i), f32(ph), f32(3.7), f32(0.0), 0, f32(0), f32(0), f32(0),
           f32(0), 0, 0, f32(t)]  # fmt: skip
    return row + ([irange] if irange is not None else [])


@pytest.mark.parametrize(("family", "irange"), [(Family.SP300, None), (Family.VMP3, 12)])
def test_peis_process_1_by_family(family: Family, irange: int | None) -> None:
    row = _eis_row(7e6, 0.01, 2e-4, -0.3, 12.5, irange)
    c = decode(
        row, rows=1, cols=len(row), technique_id=104, process=1, family=family, timebase_s=TB
    )
    assert c["freq_Hz"][0] == as_f32(7e6) and c["abs_I_A"][0] == as_f32(2e-4)
    assert c["phase_Zwe"][0] == as_f32(-0.3) and c["time_s"][0] == as_f32(12.5)
    assert ("I_range" in c) == (irange is not None)


def test_a_layout_of_the_other_family_is_refused_with_a_hint() -> None:
    row = _eis_row(1e3, 0.01, 1e-4, 0.0, 1.0, None)  # 14 columns: SP-300
    with pytest.raises(InstrumentProtocolError, match="VMP3 family"):
        decode(row, rows=1, cols=14, technique_id=104, process=1, family=Family.VMP3, timebase_s=TB)


def test_impossible_data_infos_are_refused() -> None:
    with pytest.raises(InstrumentProtocolError, match="unknown technique"):
        decode(
            [0] * 5, rows=1, cols=5, technique_id=999, process=0, family=Family.SP300, timebase_s=TB
        )
    with pytest.raises(InstrumentProtocolError, match="rows"):
        decode(
            [0] * 5,
            rows=300,
            cols=5,
            technique_id=155,
            process=0,
            family=Family.SP300,
            timebase_s=TB,
        )
    with pytest.raises(InstrumentProtocolError, match="holds"):
        decode(
            [0] * 4, rows=1, cols=5, technique_id=155, process=0, family=Family.SP300, timebase_s=TB
        )


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 2**63 - 1), finite32, finite32, st.integers(0, 2**32 - 1)),
        min_size=0, max_size=200,
    ),
    tid=st.sampled_from([101, 102, 155, 157]),
    start=st.floats(0, 1e7, allow_nan=False),
    tb=st.sampled_from([20e-6, 21.333e-6, 24e-6, 1e-3]),
)  # fmt: skip
def test_dc_rows_decode_exactly(
    rows: list[tuple[int, float, float, int]], tid: int, start: float, tb: float
) -> None:
    words: list[int] = []
    for ticks, e, i, cyc in rows:
        words += [ticks >> 32, ticks & 0xFFFFFFFF, f32(e), f32(i), cyc]
    buf = np.zeros(1000, dtype=np.uint32)
    buf[: len(words)] = words
    c = decode(buf, rows=len(rows), cols=5, technique_id=tid, process=0, family=Family.SP300,
               timebase_s=tb, start_time_s=start)  # fmt: skip
    assert c["Ewe_V"].tolist() == [e for _, e, _, _ in rows]
    assert c["I_A"].tolist() == [i for _, _, i, _ in rows]
    assert c["cycle"].tolist() == [float(x) for *_, x in rows]
    assert c["time_s"].tolist() == [start + tb * float(t) for t, *_ in rows]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(*[finite32] * 5, st.integers(0, 14)), min_size=1, max_size=66),
    vmp3=st.booleans(),
)
def test_eis_rows_decode_exactly(rows: list[tuple[float, ...]], vmp3: bool) -> None:
    words: list[int] = []
    for f, e, i, ph, t, rng in rows:
        words += _eis_row(f, e, i, ph, t, int(rng) if vmp3 else None)
    cols = 15 if vmp3 else 14
    fam = Family.VMP3 if vmp3 else Family.SP300
    c = decode(
        words, rows=len(rows), cols=cols, technique_id=107, process=1, family=fam, timebase_s=TB
    )
    for k, name in enumerate(("freq_Hz", "abs_Ewe_V", "abs_I_A", "phase_Zwe", "time_s")):
        assert c[name].tolist() == [r[k] for r in rows]
    assert c["Ewe_V"].tolist() == [as_f32(3.7)] * len(rows)
