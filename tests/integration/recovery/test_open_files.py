"""A running run holds only its journal's files open: its staging log and events.jsonl
are opened while written (a file per run kept open is a descriptor per channel, and a
station of thousands of channels runs out of them)."""

from __future__ import annotations

import os
from pathlib import Path

from labrig.orchestrator.clock import run_virtual
from labrig.orchestrator.executor import Executor, RunOptions
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text

PROTOCOL = """\
name: files
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - label: c
    repeat: 3
    steps: [Charge at 1C until 3.68 V, Discharge at 1C until 2.28 V]
"""


def _open_under(root: Path) -> set[str]:
    names: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)):
            names.add(Path(target).name)
    return names


def test_a_running_run_holds_only_its_journal_open(tmp_path: Path) -> None:
    proto = load_protocol_text(PROTOCOL)
    seen: list[set[str]] = []
    staged: list[int] = []

    def on_progress(ex: Executor) -> None:
        seen.append(_open_under(tmp_path))
        staged.append(len(list(ex.store.root.glob("data/staging-*.arrow"))))

    req = RunRequest(
        protocol=proto,
        protocol_yaml=dump_protocol_yaml(proto),
        out_dir=tmp_path,
        options=RunOptions(poll_s=600.0),
        durable=True,
        staging=True,
        stage_every_s=0.0,
    )
    outcome, root = run_virtual(execute_run(req, on_progress=on_progress))
    assert outcome.state.value == "finished"
    assert seen and max(staged) > 0  # rows were staged while the run went on
    journal = {"journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"}
    assert set().union(*seen) <= journal
    events = (root / "events.jsonl").read_text().splitlines()
    assert len(events) > 5 and events[-1].startswith("{")
