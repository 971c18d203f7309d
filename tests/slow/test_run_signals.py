"""SIGINT / SIGTERM to ``labrig run`` at seeded moments, from its first instant on.

Real processes: a simulated MACCOR in its own process (fast real clock) and ``labrig run``.
Each moment is a state the command reached (its first line ran, its run directory is
written, its run journalled the first step) and then a seeded delay: the same moments on
an idle or a loaded machine. Whatever the moment, the command says it was interrupted,
``run.json`` (if the run had begun) holds a final state, and the tester's own channel is
not left running.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import SIGNAL_STAGES, signal_run, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def tester() -> Iterator[str]:
    with simulator("maccor", speed=4000) as address:
        yield address


def test_signals_at_seeded_moments_end_with_a_final_state_and_a_safe_channel(
    tester: str, tmp_path: Path
) -> None:
    rng = random.Random(12)
    moments = [(sig, stage, 0.0 if stage == "loading" else rng.uniform(0.0, 1.0))
               for stage in SIGNAL_STAGES for sig in (signal.SIGINT, signal.SIGTERM)]  # fmt: skip
    moments += [(rng.choice([signal.SIGINT, signal.SIGTERM]), "first step", rng.uniform(1.0, 3.0))
                for _ in range(2)]  # fmt: skip
    for i, (sig, stage, delay) in enumerate(moments):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        got = signal_run(tester, folder, sig, stage=stage, delay_s=delay)
        where = f"{sig.name} at {stage} + {delay:.2f} s: {got}"
        assert got["reached"], where
        assert got["code"] == 128 + int(sig), where
        assert got["said"], where
        assert "Traceback" not in str(got["output"]), where
        assert got["channel"] != "running", where
        if stage != "loading":  # the run had begun: it ended, aborted by the signal
            assert got["state"] is not None, where
        if got["state"] is not None:
            assert got["state"] == "aborted" and sig.name in str(got["reason"]), where
