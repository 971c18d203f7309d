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


_FORMATS = "html, png, svg or pdf"
_RADIUS_HELP = "GITT: CAM particle radius in µm (default: 2.5 µm, reported as assumed)."
_NORM_HELP = "Normalise the rate table to this C-rate's block (default: the slowest rate)."


def _check_radius(radius_um: float | None) -> None:
    if radius_um is not None and (radius_um <= 0 or not math.isfinite(radius_um)):
        raise _fail("--particle-radius-um must be > 0")


def _format_for(out_path: Path | None, fmt: str | None, default: str) -> str:
    from labrig.protocols.analysis.report import output_format

    try:
        return output_format(out_path or Path(), fmt, default)
    except ValueError:
        chosen = fmt if fmt else (out_path.suffix if out_path else "")
        raise _fail(f"--format / --out: write {_FORMATS}, got {chosen!r}") from None


def report(
    run: Annotated[Path, typer.Argument(help="Run directory or vendor file.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help=f"{_FORMATS} (default: from --out, html).")
    ] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    cycles: Annotated[
        str | None, typer.Option("--cycles", help="Cycles to plot, e.g. 1,2,100.")
    ] = None,
    reference: Annotated[
        int | None, typer.Option("--reference", help="Reference cycle for retention.")
    ] = None,
    circuit: Annotated[str | None, typer.Option(help="Equivalent circuit for EIS fits.")] = None,
    radius_um: Annotated[
        float | None, typer.Option("--particle-radius-um", help=_RADIUS_HELP)
    ] = None,
    normalise_to: Annotated[float | None, typer.Option("--normalise-to", help=_NORM_HELP)] = None,
) -> None:
    """Write a report of RUN: key numbers, profiles, capacity, rate, dQ/dV, EIS, GITT; for a
    furnace run the temperature profile against its programme."""
    from labrig.protocols.analysis import DEFAULT_CIRCUIT, write_report

    kind = _format_for(out_path, fmt, "html")
    _check_radius(radius_um)
    target = out_path or (run / f"report.{kind}" if run.is_dir() else
                          run.with_name(f"{run.name}.report.{kind}"))  # fmt: skip
    if _is_furnace_run(run):
        _furnace_report(run, target, kind)
        return
    a = _analyze(run, cycles=_parse_cycles(cycles), reference_cycle=reference,
                 circuit=circuit or DEFAULT_CIRCUIT, particle_radius_um=radius_um,
                 normalise_to_c_rate=normalise_to)  # fmt: skip
    try:
        write_report(a, target, kind)
    except (OSError, ValueError) as exc:
        raise _fail(f"could not write {target}: {exc}") from None
    _print_problems(a.problems)
    out.print(f"report written: {target}", soft_wrap=True)


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories or vendor files.")],
    by: Annotated[str, typer.Option("--by", help="Group by anneal, sample or label.")] = "label",
    out_path: Annotated[
        Path, typer.Option("--out", help=f"Output file: {_FORMATS} from its suffix.")
    ] = Path("compare.png"),
    fmt: Annotated[str | None, typer.Option("--format", help=f"{_FORMATS}.")] = None,
) -> None:
    """Overlay capacity and retention of several runs, grouped by anneal, sample or label."""
    from labrig.protocols.analysis import write_compare

    if by not in ("anneal", "sample", "label"):
        raise _fail(f"--by must be anneal, sample or label, got {by!r}")
    kind = _format_for(out_path, fmt, "png")
    analyses = [_analyze(r, fit_eis=False) for r in runs]
    for a in analyses:
        _print_problems([f"{a.run.run_id}: {p}" for p in a.problems])
    try:
        write_compare(analyses, out_path, by, kind)
    except (OSError, ValueError) as exc:
        raise _fail(f"could not write {out_path}: {exc}") from None
    out.print(f"comparison written: {out_path}", soft_wrap=True)


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


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {key: _clean(x) for key, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def _print_rates(a: Any) -> None:
    cols = ("c_rate", "label", "first_cycle", "last_cycle", "discharge_capacity_mAh_g",
            "normalised_pct")  # fmt: skip
    rt = Table(title="rate capability (block means without the first cycle; % of the base)")
    for c in cols:
        rt.add_column(c)
    for row in a.rates.itertuples():
        rt.add_row(*(_cell(getattr(row, c)) for c in cols))
    out.print(rt)


#: column, heading, scale, format of the printed GITT table (gitt.csv holds every column)
_GITT_COLS = (("pulse", "#", 1.0, "d"), ("direction", "dir", 1.0, ""), ("soc", "SOC", 1.0, ".2f"),
              ("Es_V", "E_s/V", 1.0, ".4f"), ("delta_Es_V", "ΔE_s/mV", 1e3, ".1f"),
              ("delta_Et_V", "ΔE_t/mV", 1e3, ".1f"), ("D_cm2_s", "D/cm²s⁻¹", 1.0, ".2e"),
              ("sqrt_t_departure", "√t dep", 1.0, ".2f"),
              ("relax_drift_mV_h", "drift/mVh⁻¹", 1.0, ".3f"),
              ("flags", "flags", 1.0, ""))  # fmt: skip


def _gitt_cell(v: Any, scale: float, fmt: str) -> str:
    if isinstance(v, str):
        return {"charge": "ch", "discharge": "dis"}.get(v, v.replace(",", " "))
    try:
        x = float(v) * scale
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(x):
        return "–"
    return format(int(x), fmt) if fmt == "d" else format(x, fmt)


def _gitt_output(a: Any, csv_path: Path, as_json: bool) -> None:
    """Write the per-pulse GITT table as CSV and (unless JSON) print it."""
    g = a.gitt
    if g.empty:
        err.print("GITT: this run has no GITT pulses", highlight=False)
        return
    try:
        g.to_csv(csv_path, index=False)
    except OSError as exc:
        raise _fail(f"could not write {csv_path}: {exc}") from None
    if as_json:
        return
    table = Table(title=f"GITT: {len(g)} pulses, geometry {a.gitt_geometry_note}")
    for _, head, _, _ in _GITT_COLS:
        table.add_column(head, no_wrap=head != "flags", overflow="fold")
    for row in g.to_dict(orient="records"):
        table.add_row(*(_gitt_cell(row[c], k, f) for c, _, k, f in _GITT_COLS))
    out.print(table)
    out.print(f"GITT table written: {csv_path}", soft_wrap=True, highlight=False)


def analyze_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory or vendor file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    reference: Annotated[
        int | None, typer.Option("--reference", help="Reference cycle for retention.")
    ] = None,
    no_eis: Annotated[bool, typer.Option("--no-eis", help="Skip the impedance fits.")] = False,
    gitt: Annotated[
        bool, typer.Option("--gitt", help="Per-pulse GITT table: print it and write gitt.csv.")
    ] = False,
    gitt_csv: Annotated[
        Path | None, typer.Option("--gitt-csv", help="Where gitt.csv goes (default: RUN/).")
    ] = None,
    radius_um: Annotated[
        float | None, typer.Option("--particle-radius-um", help=_RADIUS_HELP)
    ] = None,
    normalise_to: Annotated[float | None, typer.Option("--normalise-to", help=_NORM_HELP)] = None,
) -> None:
    """Print the key numbers of RUN (initial CE, capacities, retention, loss per cycle, GITT,
    ...); for a furnace run its temperature profile, ramp rates, dwells and gas used."""
    from labrig.protocols.analysis.report import format_key_numbers

    _check_radius(radius_um)
    if _is_furnace_run(run):
        _furnace_analyze(run, as_json)
        return
    a = _analyze(run, reference_cycle=reference, fit_eis=not no_eis,
                 particle_radius_um=radius_um, normalise_to_c_rate=normalise_to)  # fmt: skip
    k = a.key_numbers()
    if as_json:
        k["rates"] = _clean(a.rates.to_dict(orient="records"))
        k["eis"] = _clean(a.eis_track.to_dict(orient="records"))
        if gitt:
            k["gitt"] = _clean(a.gitt.to_dict(orient="records"))
        typer.echo(json.dumps(_clean(k), indent=2, default=str))
    else:
        table = Table(title=f"{a.run.run_id}", show_header=False)
        table.add_column("quantity", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for label, value in format_key_numbers(k):
            table.add_row(label, value)
        out.print(table)
        if a.rate_test:
            _print_rates(a)
    if gitt:
        _gitt_output(a, gitt_csv or run / "gitt.csv", as_json)
    _print_problems(a.problems)


def _is_furnace_run(run: Path) -> bool:
    from labrig.protocols.analysis.furnace import is_furnace_run

    return run.is_dir() and is_furnace_run(run)


def _load_furnace(run: Path) -> Any:
    from labrig.protocols.analysis import RunDirError
    from labrig.protocols.analysis.furnace import load_furnace_run

    try:
        return load_furnace_run(run)
    except (RunDirError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _furnace_analyze(run: Path, as_json: bool) -> None:
    from labrig.protocols.analysis.furnace import furnace_results, furnace_rows

    res = furnace_results(_load_furnace(run))
    if as_json:
        typer.echo(json.dumps(_clean(res), indent=2, default=str))
        return
    table = Table(title=f"furnace run {res['run_id']}", show_header=False)
    table.add_column("quantity", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for label, value in furnace_rows(res):
        table.add_row(label, value)
    out.print(table)
    _print_problems(res["problems"])


def _furnace_report(run: Path, target: Path, kind: str) -> None:
    from labrig.protocols.analysis.furnace import write_furnace_report

    fr = _load_furnace(run)
    try:
        write_furnace_report(fr, target, kind)
    except (OSError, ValueError) as exc:
        raise _fail(f"could not write {target}: {exc}") from None
    _print_problems(fr.problems)
    out.print(f"report written: {target}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("compare")(compare)
    app.command("export")(export)
    app.command("analyze")(analyze_cmd)
