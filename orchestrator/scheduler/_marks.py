"""Marking a run directory after the scheduler stopped its run (daemon shutdown).

The executor ends a cancelled run as ``aborted``/``cancelled``. When the daemon stops a
run on purpose it knows better: stopped at a safe point (``paused``, resumable by a
restarted daemon) or stopped at once by a second signal (``aborted`` with that reason).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..events import Event, EventKind
from ..journal import Journal
from ..store import RunStore

__all__ = ["last_event", "mark_run"]

log = logging.getLogger(__name__)


def last_event(root: Path) -> dict[str, object] | None:
    """The last complete line of ``events.jsonl`` as a dict (None if there is none)."""
    path = root / "events.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            d = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if isinstance(d, dict):
            return d
    return None


def mark_run(
    root: Path,
    *,
    state: str,
    reason: str,
    resumable: bool,
    durable: bool,
    log_event: bool = True,
) -> None:
    """Set the run's final (or parked) ``state`` and ``reason`` in run.json.

    With ``log_event`` (a run that has ended) the journal's state is set too and a
    ``notify`` event saying why is appended. A parked run keeps its journal and event
    log untouched, exactly as resume expects them after a stop at a safe point.
    """
    if not log_event:
        meta = json.loads((root / "run.json").read_text(encoding="utf-8"))
        meta.update(state=state, reason=reason, resumable=resumable)
        tmp = root / "run.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        tmp.replace(root / "run.json")
        return
    last = last_event(root) or {}
    meta = json.loads((root / "run.json").read_text(encoding="utf-8"))
    seq = last.get("seq", 0)
    run_time = last.get("run_time_s", 0.0)
    event = Event(
        run_id=str(meta.get("run_id", root.name)),
        channel=str(meta.get("position", "")),
        seq=(seq if isinstance(seq, int) else 0) + 1,
        kind=EventKind.notify,
        wall_time=time.time(),
        run_time_s=float(run_time) if isinstance(run_time, int | float) else 0.0,
        data={"message": reason, "state": state, "resumable": resumable},
    )
    store = RunStore.open_existing(root, durable=durable)
    try:
        store.append_event(event)
        store.flush_events()
        store.update_meta(state=state, reason=reason, resumable=resumable)
    finally:
        store.close()
    journal_path = root / "journal.sqlite"
    if journal_path.exists():
        journal = Journal(journal_path, durable=durable)
        try:
            journal.log_event(event)
            journal.set_state(state, reason)
        finally:
            journal.close()
