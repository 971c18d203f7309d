"""Shared helpers for the simulated-cell tests."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from labrig.simulators.engine import ChannelEngine, SimEnd, SimRecord, SimStep

V_MIN, V_MAX = 2.0, 3.7


def engine(preset: str | None = None, **kw: object) -> ChannelEngine:
    """An exact (noise-free) engine with a wide envelope."""
    kw.setdefault("noise", 0.0)
    eng = ChannelEngine(preset, **kw)  # type: ignore[arg-type]
    eng.set_limits(1.0, 4.4, 0.05)
    return eng


def cc(sid: int, current: float, v_end: float, every: float = 10.0, **kw: object) -> SimStep:
    op: Literal[">=", "<="] = ">=" if current > 0 else "<="
    return SimStep(
        sid,
        "cc",
        "charge" if current > 0 else "discharge",
        current,
        ends=(SimEnd("voltage", op, v_end),),
        record=SimRecord(every_s=every),
        **kw,  # type: ignore[arg-type]
    )


def rest(sid: int, seconds: float, every: float = 10.0) -> SimStep:
    return SimStep(sid, "rest", "rest", ends=(SimEnd("time", ">=", seconds),),
                   record=SimRecord(every_s=every))  # fmt: skip


def trapz(t: npt.NDArray[np.float64], i: npt.NDArray[np.float64]) -> float:
    return float(np.sum((t[1:] - t[:-1]) * (i[1:] + i[:-1]) * 0.5))


def run_block(eng: ChannelEngine, block_id: int, steps: list[SimStep], now: float) -> float:
    """Start a block at ``now``; return when it ends."""
    eng.start_block(block_id, steps, now)
    end = eng.end_time()
    assert end is not None
    return end
