"""``labrig import``: vendor files (MACCOR, BioLogic, Neware, Arbin, BDF) into run
directories that ``labrig analyze|report|compare`` read like labrig's own runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["register"]

err = Console(stderr=True)
out = Console()

_FORMATS = "maccor, biologic-mpr, biologic-mpt, neware, arbin, bdf"


def _fail(msg: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def import_cmd(
    files: Annotated[list[Path], typer.Argument(help="Vendor files to import.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where the run directories go.")] = Path(
        "runs"
    ),
    cell: Annotated[str | None, typer.Option("--cell", help="Cell id (run.json cell_id).")] = None,
    sample: Annotated[
        str | None, typer.Option("--sample", help="Sample id, for `compare --by sample`.")
    ] = None,
    mass: Annotated[
        float | None, typer.Option("--mass", help="Cathode active mass in mg (for mAh/g).")
    ] = None,
    basis: Annotated[
        float | None,
        typer.Option("--c-rate-basis", help="Specific current of 1C in mA/g (for C-rates)."),
    ] = None,
    nominal: Annotated[
        float | None, typer.Option("--nominal-mah", help="Nominal capacity in mAh (1C).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help=f"Force a format: {_FORMATS}.")
    ] = None,
) -> None:
    """Import vendor files as run directories (one per file).

    Formats: MACCOR text and EIS exports, BioLogic .mpr/.mpt, Neware .nda/.ndax, Arbin .res
    (needs mdb-export from mdbtools), Battery Data Format CSV. Cycles, step types and
    capacities follow labrig's conventions; cycles.parquet keeps the vendor's cycle
    numbers (source_cycle). Options given apply to every file.
    """
    from labrig.orchestrator.importer import IngestError, import_file
    from labrig.protocols.ingest import FORMATS

    if fmt is not None and fmt not in FORMATS:
        raise _fail(f"--format must be one of {_FORMATS}, got {fmt!r}")
    for name, v in (("--mass", mass), ("--c-rate-basis", basis), ("--nominal-mah", nominal)):
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise _fail(f"{name} must be a number > 0, got {v}")
    given: dict[str, Any] = {"cell_id": cell, "sample_id": sample, "cam_mass_mg": mass,
                             "c_rate_basis_mA_per_g": basis,
                             "nominal_capacity_mAh": nominal}  # fmt: skip
    failed = 0
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True) as progress:  # fmt: skip
        task = progress.add_task("", total=len(files))
        for path in files:

            def stage(s: str, p: Path = path) -> None:
                progress.update(task, description=f"{p.name}: {s}")

            try:
                run = import_file(path, out_dir, given, fmt=fmt, on_stage=stage)
            except IngestError as exc:
                failed += 1
                err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
                continue
            except OSError as exc:
                failed += 1
                err.print(f"error: {path}: {exc}", markup=False, highlight=False, soft_wrap=True)
                continue
            progress.advance(task)
            out.print(f"imported {path} -> {run}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
