"""``labrig submit|ls|pause|continue|abort --lab URL``: the same commands, for the lab.

Called by :mod:`.daemon_cli` when ``--lab`` (or ``$LABRIG_LAB``) is given; the run goes
to the lab's queue instead of a local daemon.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["lab_command", "lab_ls", "lab_submit"]

err = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def lab_submit(
    lab: str, proto: Any, text: str, *, source: str, position: str | None,
    not_before: float | None, after: str | None, seed: int,
) -> None:  # fmt: skip
    from ..lab.client import LabRefused, submit
    from ..lab.db import LabUnavailable
    from ..store import new_run_id

    cell = proto.cell.cell_id if proto.cell is not None else None
    try:
        got = submit(lab, proto, text, run_id=new_run_id(proto.name, cell), position=position,
                     source=source, seed=seed, not_before=not_before, after=after)  # fmt: skip
    except LabUnavailable as exc:
        raise _fail(str(exc), 3) from None
    except LabRefused as exc:
        raise _fail(str(exc), 1) from None
    out.print(got.run_id, markup=False, highlight=False)
    err.print(f"queued on {got.agent}/{got.position} ({got.state})", highlight=False)


def lab_command(lab: str, run: str, op: str) -> None:
    from ..lab.client import LabRefused, command
    from ..lab.db import LabUnavailable

    try:
        state, reason = command(lab, run, op)
    except LabUnavailable as exc:
        raise _fail(str(exc), 3) from None
    except LabRefused as exc:
        raise _fail(str(exc), 1) from None
    if state != "accepted":
        raise _fail(f"{run}: {state}: {reason}", 1)
    out.print(f"{run}: {reason}", highlight=False)


def _state(r: dict[str, Any]) -> str:
    s = str(r["state"])
    if s in ("claimed", "running", "paused") and not r["agent_online"]:
        age = r["heartbeat_age_s"]
        s += " (agent offline" + (f" {age:.0f} s)" if age is not None else ")")
    elif r.get("reason") and s not in ("running", "paused"):
        s += f" ({r['reason']})"
    return s


def lab_ls(lab: str, as_json: bool, limit: int) -> None:
    from ..lab.db import LabUnavailable, connect, redact
    from ..lab.queries import list_bookings, list_runs

    t0 = time.perf_counter()
    try:
        conn = connect(lab, app="labrig ls")
    except LabUnavailable as exc:
        raise _fail(str(exc), 3) from None
    try:
        runs = list_runs(conn, limit=limit)
        bookings = list_bookings(conn)
    finally:
        conn.close()
    if as_json:
        print(json.dumps({"runs": runs, "bookings": bookings}, default=str))
        return
    table = Table(title=f"lab runs ({redact(lab)})")
    for col in ("run", "agent", "position", "protocol", "state", "cycle", "step"):
        table.add_column(col, overflow="fold")
    for r in runs:
        cycle = "" if r["cycle"] is None else str(r["cycle"])
        table.add_row(r["run_id"], r["agent"], r["position"], str(r["protocol"])[:40], _state(r),
                      cycle, (r["step"] or "")[:40])  # fmt: skip
    out.print(table)
    for b in bookings:
        out.print(f"{b['resource']}: {b['run_id']} ({b['holder']}) {b['state']}"
                  + (f", token {b['token']}" if b["token"] is not None else ""),
                  highlight=False)  # fmt: skip
    err.print(f"{len(runs)} runs in {1e3 * (time.perf_counter() - t0):.0f} ms", highlight=False)
