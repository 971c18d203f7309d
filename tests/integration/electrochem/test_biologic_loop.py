"""The simulated firmware's technique chains, driven through labrig's BioLogic driver.

LOOP (``loop_N_times``, ``protocol_number``) sends the technique chain back to an earlier
technique (0-based) that many more times; each pass's rows carry its loop number in the
data infos. N_Cycles runs a technique's steps that many more times, counted in the
rows' cycle column. A channel on a cell that another instrument cycles keeps to its own
blocks.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from labrig.drivers.biologic import BioLogicError
from labrig.drivers.biologic._params import Cp, Loop, Ocv, Technique
from labrig.drivers.biologic._runner import Frame
from labrig.drivers.capabilities import EisRequest
from labrig.simulators.engine import SimStep
from tests.helpers import run_virtual_strict

from .biologic_support import rig

CHARGE = Cp(currents_A=(1e-3,), durations_s=(60.0,), record_every_dt_s=10.0)
REST = Ocv(30.0, record_every_dt_s=10.0)
POLL_S = 5.0  # the host sees the chain's end within one poll


def _ended(elapsed: float, end_s: float) -> bool:
    return end_s <= elapsed <= end_s + POLL_S + 1e-6


def _run(chain: list[Technique]) -> tuple[list[Frame], float, list[str]]:
    async def main() -> tuple[list[Frame], float, list[str]]:
        async with rig("VMP-300", noise=0.0, poll_s=POLL_S) as r:
            frames: list[Frame] = []
            t0 = r.sim.library.now()
            await r.ch.runner.run(chain, frames.append)
            assert not r.sim.instrument.channels[0].running
            assert r.engine.status(r.sim.library.now()).state != "running"
            return frames, r.sim.library.now() - t0, list(r.sim.library.calls)

    return run_virtual_strict(main())


def _passes(frames: list[Frame]) -> list[tuple[int, int]]:
    """(technique index, loop number) in the order the rows came, one per pass."""
    out: list[tuple[int, int]] = []
    for f in frames:
        key = (f.technique_index, f.loop)
        if not out or out[-1] != key:
            out.append(key)
    return out


def _times(frames: list[Frame]) -> np.ndarray:
    return np.concatenate([f.columns["time_s"] for f in frames])


def test_loop_runs_the_chain_again_from_the_technique_it_names() -> None:
    frames, elapsed, calls = _run([CHARGE, REST, Loop(repeat=2, goto_technique=0)])
    assert calls.count("BL_StartChannel") == 1  # the firmware loops, not the host
    assert _passes(frames) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    assert _ended(elapsed, 3 * 90.0)
    t = _times(frames)
    assert np.all(np.diff(t) >= 0)  # one time line across the passes
    assert t[-1] == pytest.approx(270.0, abs=1.0)
    ends = []
    for n in range(3):  # each charge pass: 60 s at 1 mA from 90 s after the previous one
        rows = [f.columns for f in frames if (f.technique_index, f.loop) == (0, n)]
        t = np.concatenate([c["time_s"] for c in rows])
        assert np.allclose(np.concatenate([c["I_A"] for c in rows]), 1e-3, rtol=1e-3)
        assert t[0] == pytest.approx(90.0 * n, abs=1e-3)
        assert t[-1] == pytest.approx(90.0 * n + 60.0, abs=1e-3)
        ends.append(float(rows[-1]["Ewe_V"][-1]))
    assert ends == sorted(ends) and ends[-1] > ends[0]  # each pass charges the cell further


def test_a_loop_inside_a_loop_starts_afresh_on_each_outer_pass() -> None:
    short = Cp(currents_A=(1e-3,), durations_s=(10.0,), record_every_dt_s=5.0)
    rest = Ocv(10.0, record_every_dt_s=5.0)
    chain: list[Technique] = [short, Loop(1, 0), rest, Loop(2, 0)]
    frames, elapsed, _ = _run(chain)
    techniques = [k for k, _ in _passes(frames)]
    assert techniques == [0, 0, 2] * 3  # inner loop once more on each of three passes
    assert _ended(elapsed, 90.0)
    # the loop number counts every jump back, inner and outer
    assert [n for _, n in _passes(frames)] == [0, 1, 1, 2, 3, 3, 4, 5, 5]


def test_zero_loops_go_straight_on() -> None:
    frames, elapsed, _ = _run([CHARGE, Loop(0, 0), REST])
    assert _passes(frames) == [(0, 0), (2, 0)]
    assert _ended(elapsed, 90.0)


def test_n_cycles_repeat_a_techniques_steps() -> None:
    two_steps = Cp(currents_A=(1e-3, -1e-3), durations_s=(20.0, 20.0), record_every_dt_s=5.0,
                   n_cycles=2)  # fmt: skip
    frames, elapsed, _ = _run([two_steps])
    assert _ended(elapsed, 120.0)
    cols = {k: np.concatenate([f.columns[k] for f in frames]) for k in ("cycle", "I_A", "time_s")}
    assert sorted(set(cols["cycle"].tolist())) == [0.0, 1.0, 2.0]
    for c in (0, 1, 2):
        t = cols["time_s"][cols["cycle"] == c]
        assert t.min() >= 40.0 * c - 1e-3 and t.max() <= 40.0 * (c + 1) + 1e-3
    assert (cols["I_A"] > 0).any() and (cols["I_A"] < 0).any()


def test_a_loop_to_itself_or_beyond_is_refused_at_load() -> None:
    async def main() -> None:
        async with rig("VMP-300") as r:
            with pytest.raises(BioLogicError, match="-4") as info:
                await r.ch.runner.load([CHARGE, Loop(1, goto_technique=1)])
            assert info.value.code == -4
            assert "BL_StartChannel" not in r.sim.library.calls

    run_virtual_strict(main())


def test_a_cell_shared_with_a_cycler_is_measured_not_driven() -> None:
    """The VMP-300 channel takes the EIS of a cell a MACCOR channel cycles: it neither
    reads back nor stops the cycler's block, and refuses to start while it runs."""

    async def main() -> None:
        async with rig("VMP-300", noise=0.0, poll_s=POLL_S) as r:
            now = r.sim.library.now
            v_before = r.engine.ocv(now())
            charge = SimStep(1, "cc", "charge", current_A=1e-3, max_duration_s=600.0)
            r.engine.start_block(7, [charge], now())  # the cycler drives the cell
            await asyncio.sleep(60.0)
            await r.ch.safe_state()  # the potentiostat's channel stops; the cycler's does not
            assert r.engine.status(now()).state == "running"
            with pytest.raises(BioLogicError, match="-6") as info:
                await r.ch.measure_eis(EisRequest((1000.0, 100.0), amplitude_V=0.01))
            assert "BL_StartChannel" in info.value.call
            end = r.engine.end_time()
            assert end is not None
            await asyncio.sleep(end - now() + 60.0)
            frames: list[Frame] = []
            t0 = now()
            await r.ch.runner.run([REST], frames.append)
            t = _times(frames)  # the rest's rows only, none of the cycler's 600 s
            assert {f.technique_index for f in frames} == {0} and t.size == 4
            assert t[0] >= 0.0 and t[-1] == pytest.approx(30.0, abs=1e-3)
            assert now() - t0 < 30.0 + POLL_S + 1e-6
            rest_v = np.concatenate([f.columns["Ewe_V"] for f in frames])
            assert np.all(rest_v > v_before + 0.01)  # it measures the cell the cycler charged

    run_virtual_strict(main())
