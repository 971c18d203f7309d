"""Server-side decimation keeps what a plot at that width would show."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.orchestrator.web.series import decimate


def test_short_windows_come_back_whole() -> None:
    t = np.arange(100.0)
    assert decimate(t, [t], None, None, 50).tolist() == list(range(100))
    assert decimate(t, [t], 10.0, 20.0, 50).tolist() == list(range(9, 22))  # one either side


def test_a_million_points_become_a_few_thousand_and_keep_every_spike() -> None:
    n = 1_000_000
    t = np.arange(n, dtype=float)
    v = np.sin(t / 5000.0)
    spikes = [123_457, 500_001, 999_998]
    v[spikes] = [5.0, -5.0, 7.0]
    i = np.zeros(n)
    i[777_777] = 1.0
    idx = decimate(t, [v, i], None, None, 1000)
    assert len(idx) <= 6 * 1000
    assert set(spikes) <= set(idx.tolist()) and 777_777 in idx
    assert idx[0] == 0 and idx[-1] == n - 1 and bool(np.all(np.diff(idx) > 0))


def test_gaps_and_nan_are_handled() -> None:
    t = np.concatenate([np.arange(0.0, 5000.0), np.arange(1e6, 1e6 + 5000.0)])
    v = np.where(np.arange(len(t)) % 7 == 0, np.nan, np.cos(t))
    idx = decimate(t, [v], None, None, 100)
    assert len(idx) < 600 and {0, 4999, 5000, len(t) - 1} <= set(idx.tolist())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=3000),
    st.integers(1, 60),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_min_and_max_inside_the_window_are_always_kept(
    values: list[float], buckets: int, a: float, b: float
) -> None:
    y = np.array(values)
    t = np.arange(len(y), dtype=float)
    lo, hi = sorted((a * len(y), b * len(y)))
    idx = decimate(t, [y], lo, hi, buckets)
    inside = (t >= lo) & (t <= hi)
    if inside.any():
        kept = y[idx]
        assert kept.max() >= y[inside].max() and kept.min() <= y[inside].min()
    assert bool(np.all(np.diff(idx) > 0))
