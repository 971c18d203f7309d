"""``labrig report``, ``labrig compare``, ``labrig export`` and ``labrig analyze``: results
of run directories (see :mod:`protocols.analysis`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

err = Console(stderr=True)
out = Console()


def _fail(msg: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _parse_cycles(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        vals = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise _fail(f"--cycles takes comma-separated cycle numbers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise _fail(f"--cycles takes cycle numbers >= 1, got {text!r}")
    return vals


def _resolve(run: Path) -> Path:
    """A vendor file (MACCOR, BioLogic, Neware, Arbin, BDF) is imported on the fly, once:
    the import is cached by the file's checksum (see orchestrator.importer)."""
    if run.is_dir() or not run.exists():
        return run
    from labrig.orchestrator.importer import IngestError, resolve_run

    try:
        return resolve_run(run)
    except (IngestError, OSError) as exc:
        raise _fail(str(exc)) from None


def _analyze(run: Path, **kw: Any) -> Any:
    from labrig.protocols.analysis import AnalysisOptions, RunDirError, analyze, load_run

    run = _resolve(run)
    try:
        data = load_run(run)
    except RunDirError as exc:
        raise _fail(str(exc)) from None
    return analyze(data, AnalysisOptions(**kw))


def _print_problems(problems: list[str]) -> None:
    for p in problems:
        err.print(f"[yellow]missing/incomplete:[/yellow] {p}", highlight=False, soft_wrap=True)


def report(
    run: Annotated[Path, typer.Argument(help="Run directory or vendor file.")],
    fmt: Annotated[str, typer.Option("--format", help="html or png.")] = "html",
    out_path: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    cycles: Annotated[
        str | None, typer.Option("--cycles", help="Cycles to plot, e.g. 1,2,100.")
    ] = None,
    reference: Annotated[
        int | None, typer.Option("--reference", help="Reference cycle for retention.")
    ] = None,
    circuit: Annotated[str | None, typer.Option(help="Equivalent circuit for EIS fits.")] = None,
    radius_um: Annotated[
        float, typer.Option("--particle-radius-um", help="GITT: CAM particle radius.")
    ] = 2.5,
) -> None:
    """Write a report of RUN: key numbers, profiles, capacity, rate, dQ/dV, EIS, GITT."""
    from labrig.protocols.analysis import DEFAULT_CIRCUIT, write_report

    fmt = fmt.lower()
    if fmt not in ("html", "png"):
        raise _fail(f"--format must be html or png, got {fmt!r}")
    if radius_um <= 0 or not math.isfinite(radius_um):
        raise _fail("--particle-radius-um must be > 0")
    a = _analyze(run, cycles=_parse_cycles(cycles), reference_cycle=reference,
                 circuit=circuit or DEFAULT_CIRCUIT,
                 default_particle_radius_um=radius_um)  # fmt: skip
    target = out_path or (run / f"report.{fmt}" if run.is_dir() else
                          run.with_name(f"{run.name}.report.{fmt}"))  # fmt: skip
    try:
        write_report(a, target, fmt)
    except (OSError, ValueError) as exc:
        raise _fail(f"could not write {target}: {exc}") from None
    _print_problems(a.problems)
    out.print(f"report written: {target}")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories or vendor files.")],
    by: Annotated[str, typer.Option("--by", help="Group by anneal, sample or label.")] = "label",
    out_path: Annotated[Path, typer.Option("--out", help="Output .png or .html.")] = Path(
        "compare.png"
    ),
) -> None:
    """Overlay capacity and retention of several runs, grouped by anneal, sample or label."""
    from labrig.protocols.analysis import write_compare

    if by not in ("anneal", "sample", "label"):
        raise _fail(f"--by must be anneal, sample or label, got {by!r}")
    if out_path.suffix.lower() not in (".png", ".html"):
        raise _fail(f"--out must end in .png or .html, got {out_path.name!r}")
    analyses = [_analyze(r, fit_eis=False) for r in runs]
    for a in analyses:
        _print_problems([f"{a.run.run_id}: {p}" for p in a.problems])
    try:
        write_compare(analyses, out_path, by)
    except (OSError, ValueError) as exc:
        raise _fail(f"could not write {out_path}: {exc}") from None
    out.print(f"comparison written: {out_path}")


def export(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    fmt: Annotated[str, typer.Option("--format", help="bdf-csv or bdf-parquet.")] = "bdf-csv",
    out_path: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
) -> None:
    """Export the time series of RUN in the Battery Data Format (BDF)."""
    from labrig.protocols.analysis import RunDirError, export_bdf

    kinds = {"bdf-csv": "csv", "bdf-parquet": "parquet"}
    if fmt not in kinds:
        raise _fail(f"--format must be bdf-csv or bdf-parquet, got {fmt!r}")
    if not run.is_dir():
        raise _fail(f"{run}: not a directory (expected a run directory)")
    try:
        path = export_bdf(run, out_path, kinds[fmt])
    except (RunDirError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    out.print(f"BDF written: {path} (conventions in {path.name}.metadata.json)")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.5g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_cell(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_cell(x) for x in v)
    return "–" if v is None else str(v)


def analyze_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory or vendor file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    reference: Annotated[
        int | None, typer.Option("--reference", help="Reference cycle for retention.")
    ] = None,
    no_eis: Annotated[bool, typer.Option("--no-eis", help="Skip the impedance fits.")] = False,
) -> None:
    """Print the key numbers of RUN (initial CE, capacities, retention, loss per cycle, ...)."""
    from labrig.protocols.analysis.report import format_key_numbers

    a = _analyze(run, reference_cycle=reference, fit_eis=not no_eis)
    k = a.key_numbers()
    if as_json:

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {key: clean(x) for key, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        k["rates"] = clean(a.rates.to_dict(orient="records"))
        k["eis"] = clean(a.eis_track.to_dict(orient="records"))
        typer.echo(json.dumps(clean(k), indent=2, default=str))
        return
    table = Table(title=f"{a.run.run_id}", show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")
    for label, value in format_key_numbers(k):
        table.add_row(label, value)
    out.print(table)
    if not a.rates.empty and len(a.rates) > 1:
        rt = Table(title="rate capability")
        for c in ("c_rate", "first_cycle", "last_cycle", "discharge_capacity_mAh_g",
                  "normalised_pct"):  # fmt: skip
            rt.add_column(c)
        for row in a.rates.itertuples():
            rt.add_row(*(_cell(getattr(row, c)) for c in (
                "c_rate", "first_cycle", "last_cycle", "discharge_capacity_mAh_g",
                "normalised_pct")))  # fmt: skip
        out.print(rt)
    _print_problems(a.problems)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("compare")(compare)
    app.command("export")(export)
    app.command("analyze")(analyze_cmd)
