"""The vectorised dV record rule keeps exactly the points a one-by-one walk keeps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.simulators.cell.recording import keep_dv as _keep_dv


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


def test_engine_dv_rule_leaves_no_voltage_gap_bigger_than_dv() -> None:
    """Records every 60 s plus whenever V moved by 5 mV: no two neighbouring records of a
    CC step differ by much more than 5 mV, and steep parts get extra records."""
    from labrig.simulators.engine import ChannelEngine, SimEnd, SimRecord, SimStep

    eng = ChannelEngine(None, noise=0.0)
    rec = SimRecord(every_s=60.0, dV_V=0.005)
    steps = [
        SimStep(1, "cc", "charge", current_A=1.6e-3, ends=(SimEnd("voltage", ">=", 3.68),),
                record=rec),
        SimStep(2, "cc", "discharge", current_A=-1.6e-3, ends=(SimEnd("voltage", "<=", 2.28),),
                record=rec),
    ]  # fmt: skip
    eng.start_block(1, steps, 0.0)
    end = eng.end_time()
    assert end is not None
    r = eng.records_after(0, end)
    for sid in (1, 2):
        v = r["voltage_V"][r["step_id"] == sid]
        t = r["time_s"][r["step_id"] == sid]
        assert np.max(np.abs(np.diff(v))) < 0.005 * 1.6
        assert np.min(np.diff(t)) < 60.0  # the rule added records between the 60 s ones
