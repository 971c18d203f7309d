"""``labrig import``: vendor files (MACCOR, BioLogic, Neware, Arbin, BDF) into run
directories that ``labrig analyze|report|compare`` read like labrig's own runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ._paths import writable_dir_or_exit

__all__ = ["register"]

err = Console(stderr=True)
out = Console()

_FORMATS = "maccor, biologic-mpr, biologic-mpt, neware, arbin, bdf"


def _fail(msg: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _plan(files: list[Path], fmt: str | None) -> list[tuple[Path, list[Path]]]:
    """The files as imports: each MACCOR data export with the EIS exports of its test given
    beside it; every other file (an EIS export of no data export given) alone."""
    from labrig.protocols.ingest import IngestError, detect_format, is_maccor_eis, same_test

    def maccor_data(p: Path) -> bool:
        try:
            return (fmt or detect_format(p)) == "maccor"
        except IngestError:
            return False  # its import says why

    eis = [p for p in files if fmt in (None, "maccor") and is_maccor_eis(p)]
    data = [p for p in files if p not in eis]
    plan: list[tuple[Path, list[Path]]] = []
    taken: set[Path] = set()
    for p in data:
        mine = [e for e in eis if e not in taken and same_test(p, e)] if maccor_data(p) else []
        taken.update(mine)
        plan.append((p, mine))
    plan += [(e, []) for e in eis if e not in taken]
    return plan


def _run_one(path: Path, eis: list[Path], out_dir: Path, given: dict[str, Any],
             fmt: str | None, siblings: bool, stage: Any) -> bool:  # fmt: skip
    """Import one file; prints what happened; False on an error (named, no traceback)."""
    from labrig.orchestrator.importer import IngestError, import_file

    def say(msg: str, console: Console = out) -> None:
        console.print(msg, markup=False, highlight=False, soft_wrap=True)

    try:
        run = import_file(path, out_dir, given, fmt=fmt, on_stage=stage, eis=eis,
                          siblings=siblings)  # fmt: skip
    except IngestError as exc:
        say(f"error: {exc}", err)
        return False
    except OSError as exc:
        say(f"error: {path}: {exc}", err)
        return False
    except Exception as exc:  # a reader's own failure on a file it could not take
        say(f"error: {path}: could not be imported ({type(exc).__name__}: {exc})", err)
        return False
    with open(run / "run.json", encoding="utf-8") as fh:
        attached = json.load(fh).get("imported", {}).get("eis_files", [])
    extra = f" (with {len(attached)} EIS export(s))" if attached else ""
    say(f"imported {path}{extra} -> {run}")
    return True


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
    siblings: Annotated[
        bool,
        typer.Option(
            "--siblings/--no-siblings",
            help="Add the EIS exports of a MACCOR test found next to its data export.",
        ),
    ] = True,
) -> None:
    """Import vendor files as run directories (one per file, or per MACCOR test).

    Formats: MACCOR text and EIS exports, BioLogic .mpr/.mpt, Neware .nda/.ndax, Arbin .res
    (needs mdb-export from mdbtools), Battery Data Format CSV. A MACCOR data export and the
    EIS exports of the same test (TEST.078 with TEST.EDA0001.078, data.txt with
    data_EIS.txt), given together or found beside it, make one run (spectra in eis/).
    Cycles, step types and capacities follow labrig's conventions; cycles.parquet keeps
    the vendor's cycle numbers (source_cycle). Options given apply to every file.
    """
    from labrig.protocols.ingest import FORMATS

    if fmt is not None and fmt not in FORMATS:
        raise _fail(f"--format must be one of {_FORMATS}, got {fmt!r}")
    for name, v in (("--mass", mass), ("--c-rate-basis", basis), ("--nominal-mah", nominal)):
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise _fail(f"{name} must be a number > 0, got {v}")
    given: dict[str, Any] = {"cell_id": cell, "sample_id": sample, "cam_mass_mg": mass,
                             "c_rate_basis_mA_per_g": basis,
                             "nominal_capacity_mAh": nominal}  # fmt: skip
    plan = _plan(files, fmt)
    writable_dir_or_exit(out_dir, "--out", err)
    failed = 0
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True) as progress:  # fmt: skip
        task = progress.add_task("", total=len(plan))
        for path, eis in plan:

            def stage(s: str, p: Path = path) -> None:
                progress.update(task, description=f"{p.name}: {s}")

            if _run_one(path, eis, out_dir, given, fmt, siblings, stage):
                progress.advance(task)
            else:
                failed += 1
    if failed:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
