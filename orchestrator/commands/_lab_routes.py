"""``labrig submit|ls|pause|continue|abort --lab URL``: the same commands, for the lab.

Called by :mod:`.daemon_cli` when ``--lab`` (or ``$LABRIG_LAB``) is given; the run goes
to the lab's queue instead of a local daemon.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

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


def lab_ls(lab: str, as_json: bool, limit: int) -> None:
    """``labrig ls --lab`` when the quick path (:mod:`..lab.lsview`) left it to typer."""
    import sys

    from ..lab.lsview import print_ls

    code = print_ls(lab, as_json, limit, out=sys.stdout, err=sys.stderr)
    if code:
        raise typer.Exit(code)
