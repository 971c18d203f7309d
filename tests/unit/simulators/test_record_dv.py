"""The vectorised dV record rule keeps exactly the points a one-by-one walk keeps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.cell.runner import _keep_dv


def _walk(v: np.ndarray, forced: np.ndarray, last: float | None, dv: float) -> np.ndarray:
    keep = np.zeros(v.size, dtype=bool)
    for j in range(v.size):
        if forced[j] or last is None or abs(v[j] - last) >= dv:
            keep[j] = True
            last = float(v[j])
    return keep


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.floats(-0.01, 0.01), min_size=1, max_size=80),
    forced=st.lists(st.booleans(), min_size=80, max_size=80),
    last=st.one_of(st.none(), st.floats(2.9, 3.1)),
)
def test_keep_dv_matches_the_sequential_rule(
    steps: list[float], forced: list[bool], last: float | None
) -> None:
    v = 3.0 + np.cumsum(steps)
    f = np.array(forced[: v.size])
    assert np.array_equal(_keep_dv(v, f, last, 0.005), _walk(v, f, last, 0.005))
