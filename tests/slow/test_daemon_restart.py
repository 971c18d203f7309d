"""A daemon restart re-attaches every run it stopped and keeps its queue.

Real processes: a simulated MACCOR and a simulated PalmSens, each in its own process on
a fast real clock (the instruments outlive the daemon), and ``labrig serve`` stopped
with SIGTERM (runs paused at a safe point, resumable) and started again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.daemon import request
from tests.procs import (
    daemon_ls,
    event_count,
    maccor_channel_state,
    serving,
    simulator,
    stop,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PROTOCOL = """\
name: restart drill
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - label: aging
    repeat: 3
    steps:
      - Charge at 1C until 3.68 V
      - EIS from 10 kHz to 10 Hz, 5 per decade, 10 mV amplitude at OCV
      - Discharge at 1C until 2.28 V
"""


@pytest.fixture
def maccor() -> Iterator[str]:
    with simulator("maccor", speed=4000) as address:
        yield address


@pytest.fixture
def palmsens() -> Iterator[str]:
    with simulator("palmsens", speed=4000) as address:
        yield address


def _station(folder: Path, maccor: str, palmsens: str, shared: bool) -> Path:
    eis = ["eis/0", "eis/0", "eis/0"] if shared else [None, None, None]
    lines = [
        "name: lab",
        "instruments:",
        f"  cycler: {{driver: maccor, address: '{maccor}', channels: 8}}",
        f"  eis: {{driver: palmsens, address: '{palmsens}', channels: 1}}",
        "positions:",
    ]
    for i, ref in enumerate(eis):
        imp = f", impedance: {ref}" if ref else ""
        lines.append(f"  - {{name: A{i + 1}, cycler: cycler/{i}{imp}}}")
    path = folder / "station.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_rows(root: Path) -> None:
    seq = pq.read_table(root / "data").column("record_seq").to_numpy()
    assert len(np.unique(seq)) == len(seq), f"{root.name}: a record was stored twice"
    block, rec = seq >> 32, seq & 0xFFFFFFFF
    for b in np.unique(block):
        r = np.sort(rec[block == b])
        assert np.array_equal(r, np.arange(1, len(r) + 1)), f"{root.name}: gap in block {b}"


@pytest.mark.parametrize(
    ("shared", "grace"),
    [(True, 60.0), (False, 60.0), (False, 0.0)],
    ids=["shared-eis", "own-instruments", "blocks-left-to-the-tester"],
)
def test_restart_reattaches_every_stopped_run_and_keeps_the_queue(
    tmp_path: Path, maccor: str, palmsens: str, shared: bool, grace: float
) -> None:
    """``grace`` 0: the daemon does not wait for block ends; the tester carries the
    blocks on and the next daemon adopts them (``attach_block``)."""
    station = _station(tmp_path, maccor, palmsens, shared)
    proto = tmp_path / "drill.yaml"
    proto.write_text(PROTOCOL if shared else PROTOCOL.replace("      - EIS from", "      # "))
    runs, log = tmp_path / "runs", tmp_path / "serve.log"
    with serving(runs, station, log, grace_s=grace) as proc:
        ids = []
        for i, pos in enumerate(["A1", "A2", "A3", "A1"]):
            reply = request(runs, {"op": "submit", "protocol_yaml": proto.read_text(),
                                   "position": pos, "run_id": f"run{i}"})  # fmt: skip
            ids.append(reply["run_id"])
        running, queued = ids[:3], ids[3]
        # stop once every run has recorded something of its own
        assert wait_until(lambda: all(event_count(runs / r) >= 3 for r in running), 120)
        assert stop(proc) == 0
    for r in running:
        meta = json.loads((runs / r / "run.json").read_text())
        assert meta["state"] == "paused" and meta["resumable"] is True, meta
    assert [q["run_id"] for q in json.loads((runs / "queue.json").read_text())] == [queued]

    with serving(runs, station, log) as proc:
        listed = {row["run_id"] for row in daemon_ls(runs) or []}
        assert set(ids) <= listed, f"{listed}: the queued run is kept"
        assert queued in [q["run_id"] for q in json.loads((runs / "queue.json").read_text())]

        def ended() -> bool:
            rows = daemon_ls(runs) or []
            return len(rows) == 4 and all(
                r["state"] in ("finished", "failed", "aborted") for r in rows
            )

        assert wait_until(ended, 150)
        states = {r["run_id"]: (r["state"], r["reason"]) for r in daemon_ls(runs) or []}
        assert stop(proc) == 0
    assert all(s == "finished" for s, _ in states.values()), (states, log.read_text()[-3000:])
    assert "Traceback" not in log.read_text()
    for r in ids:
        meta = json.loads((runs / r / "run.json").read_text())
        assert meta["state"] == "finished"
        _check_rows(runs / r)
    for r in running:
        assert json.loads((runs / r / "run.json").read_text()).get("resumed")


def test_a_failed_reattach_holds_the_channel_and_says_so_not_resumable(
    tmp_path: Path, palmsens: str
) -> None:
    proto = tmp_path / "drill.yaml"
    proto.write_text(PROTOCOL.replace("      - EIS from", "      # "))
    runs, log = tmp_path / "runs", tmp_path / "serve.log"
    with simulator("maccor", speed=4000) as maccor:
        station = _station(tmp_path, maccor, palmsens, shared=False)
        with serving(runs, station, log) as proc:
            request(runs, {"op": "submit", "protocol_yaml": proto.read_text(),
                           "position": "A1", "run_id": "lost"})  # fmt: skip
            assert wait_until(lambda: event_count(runs / "lost") >= 3, 120)
            assert stop(proc) == 0
    # the tester is gone: the next daemon cannot re-attach
    assert json.loads((runs / "lost" / "run.json").read_text())["resumable"] is True
    events_before = (runs / "lost" / "events.jsonl").read_bytes()
    with serving(runs, station, log) as proc:

        def lost() -> dict[str, Any]:
            return next(r for r in daemon_ls(runs) or [] if r["run_id"] == "lost")

        assert wait_until(lambda: lost()["state"] == "detached", 60)
        assert maccor.split("//")[1] in str(lost()["reason"])
        meta = json.loads((runs / "lost" / "run.json").read_text())
        assert meta["state"] == "paused" and meta["resumable"] is False, meta
        assert "re-attach" in meta["reason"] and "labrig resume" in meta["reason"], meta
        # nothing but run.json changed; the channel is held until an operator decides
        assert (runs / "lost" / "events.jsonl").read_bytes() == events_before
        queued = request(runs, {"op": "submit", "protocol_yaml": proto.read_text(),
                                "position": "A1", "run_id": "next"})  # fmt: skip
        assert queued["state"] == "queued"
        request(runs, {"op": "abort", "run": "lost"})
        assert wait_until(lambda: lost()["state"] == "aborted", 30)
        assert stop(proc) == 0
    meta = json.loads((runs / "lost" / "run.json").read_text())
    assert meta["state"] == "aborted" and meta["resumable"] is False, meta
    # the tester could not be reached to command its safe state: the reason says so
    assert "could not all be put in their safe state" in meta["reason"], meta
    assert "Traceback" not in log.read_text()


def test_a_damaged_run_is_detached_and_its_running_block_left_alone(
    tmp_path: Path, maccor: str, palmsens: str
) -> None:
    station = _station(tmp_path, maccor, palmsens, shared=False)
    # one long block: the tester is still running it when the daemon stops without grace
    text = PROTOCOL.replace("      - EIS from", "      # ").replace("repeat: 3", "repeat: 400")
    runs, log = tmp_path / "runs", tmp_path / "serve.log"
    with serving(runs, station, log, grace_s=0.0) as proc:
        request(runs, {"op": "submit", "protocol_yaml": text, "position": "A1",
                       "run_id": "damaged"})  # fmt: skip
        assert wait_until(lambda: event_count(runs / "damaged") >= 3, 120)
        assert stop(proc) == 0
    root = runs / "damaged"
    assert json.loads((root / "run.json").read_text())["resumable"] is True
    for f in root.glob("journal.sqlite*"):
        f.unlink()  # the journal is gone: the run cannot be resumed safely
    assert maccor_channel_state(maccor) == "running"
    before = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file() and
              p.name != "run.json"}  # fmt: skip
    with serving(runs, station, log) as proc:
        assert wait_until(lambda: any(r["state"] == "detached" for r in daemon_ls(runs) or []), 60)
        row = next(r for r in daemon_ls(runs) or [] if r["run_id"] == "damaged")
        assert "journal" in str(row["reason"]), row
        # refused before anything was sent: the tester ran the block on (or to its end);
        # a safe state would have reset the channel (idle)
        assert maccor_channel_state(maccor) in ("running", "done")
        assert stop(proc) == 0
    after = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file() and
             p.name != "run.json"}  # fmt: skip
    assert after == before, "a file of the damaged run was changed"
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "paused" and meta["resumable"] is False, meta
    # the operator aborts it: never re-attached, its channel is still reset (safe state)
    with serving(runs, station, log) as proc:
        assert wait_until(lambda: any(r["state"] == "detached" for r in daemon_ls(runs) or []), 60)
        request(runs, {"op": "abort", "run": "damaged"})
        assert wait_until(lambda: any(r["run_id"] == "damaged" and r["state"] == "aborted"
                                      for r in daemon_ls(runs) or []), 30)  # fmt: skip
        assert maccor_channel_state(maccor) == "idle"
        assert stop(proc) == 0
    meta = json.loads((root / "run.json").read_text())
    assert meta["state"] == "aborted" and "put in their safe state" in meta["reason"], meta
    assert "Traceback" not in log.read_text()
