"""``labrig resume`` on a damaged run: the refusal, and the user's two choices."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from ..station import StationConfig

err = Console(stderr=True)
out = Console()

#: exit status of a resume refused because the run is damaged
DAMAGED = 3


def refuse(exc: Exception) -> typer.Exit:
    """Print why a run was not resumed and what the user can do (exit status 3 if it is
    damaged, 2 if its channel holds another test)."""
    from ..run.damage import RunDamaged

    err.print(f"error: {exc}", markup=False, soft_wrap=True)
    return typer.Exit(DAMAGED if isinstance(exc, RunDamaged) else 2)


def choose(run_dir: Path, station: StationConfig, *, from_instrument: bool, abort: bool) -> None:
    """``--from-instrument`` or ``--abort``; exits with 0 when done, 2 when refused."""
    from ..run.damage import abort_run, recover_run

    if from_instrument and abort:
        err.print("error: give --from-instrument or --abort, not both", markup=False)
        raise typer.Exit(2)
    try:
        if abort:
            asyncio.run(abort_run(run_dir, station=station))
            out.print(
                f"{run_dir.name}: aborted; its instrument channel is in its safe state",
                markup=False, soft_wrap=True,
            )  # fmt: skip
            return
        got = asyncio.run(recover_run(run_dir, station=station))
    except (OSError, ValueError) as exc:
        err.print(f"error: {run_dir}: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    out.print(
        f"{run_dir.name}: {got.rows} records read back from the instrument "
        f"({got.span}) into {got.path.relative_to(run_dir)}"
        + (f" (the channel's current test, {got.other_test}, belongs to another run: "
           f"only this run's tests were read)" if got.other_test else "")
        + f"; set aside in damaged/: {', '.join(got.set_aside) or 'nothing'}; the run is "
        f"marked failed and its instrument was left as it was",
        markup=False, soft_wrap=True,
    )  # fmt: skip
