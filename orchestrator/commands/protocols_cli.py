"""``labrig validate``, ``labrig schema`` and ``labrig library``: thin shells over protocols."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from labrig.protocols import (
    ProtocolError,
    list_library,
    load_protocol,
    render_summary,
    summarize,
)

from ._options import PositionOption, SetOption, parse_sets

if TYPE_CHECKING:
    from labrig.protocols.models import Protocol

EXIT_INVALID = 2


def validate(
    file: Annotated[str, typer.Argument(help="A protocol YAML file or a library name.")],
    set_: SetOption = None,
    station: Annotated[
        Path | None,
        typer.Option(
            "--station",
            help="Also check every step against what this station's instruments reach "
            "(EIS frequencies, currents, setpoints, flows).",
        ),
    ] = None,
    position: PositionOption = None,
    sim: Annotated[
        bool,
        typer.Option(
            "--sim",
            help="Check as `labrig run --sim` would: the built-in simulated station's "
            "ranges (unless --station is given) and the simulated cell's preset.",
        ),
    ] = False,
) -> None:
    """Check a protocol; print its summary (exit 0) or every error as file:line (exit 2).

    Takes the options of `labrig run` that change what runs (--set, --station,
    --position, --sim) and refuses what `labrig run` would refuse."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        protocol = load_protocol(file, overrides=parse_sets(set_))
    except ProtocolError as exc:
        for issue in exc.issues:
            err.print(str(issue), markup=False)
        err.print(f"{len(exc.issues)} error(s); the protocol is not valid.", style="red")
        raise typer.Exit(EXIT_INVALID) from None
    # every check that can refuse runs before "valid" is printed: never "valid", then exit 2
    _check_compiles(protocol, sim, err)
    fits = None
    if station is not None or sim:
        fits = _check_station(file, protocol, station, position, err)
    out = Console(highlight=False, soft_wrap=True)
    summary = summarize(protocol)
    text = render_summary(summary)
    head, _, rest = text.partition("\n")
    out.print(f"[green]valid[/green] [bold]{head}[/bold]", highlight=False)
    if rest:
        out.print(rest, markup=False)
    from ..instruments.sim.presets import rest_voltage_warnings

    for warning in (*summary.warnings, *rest_voltage_warnings(protocol)):
        out.print("[yellow]warning:[/yellow] ", end="")
        out.print(warning, markup=False)
    if fits is not None:
        out.print("[green]fits[/green] ", end="")
        out.print(fits, markup=False)


def _check_compiles(protocol: Protocol, sim: bool, err: Console) -> None:
    """Exit 2 where `labrig run` would refuse before starting: a cycler step that does not
    compile, a simulated cell's preset that does not exist."""
    from .run_cli import check_compiles

    try:
        check_compiles(protocol, sim)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None


def _check_station(
    file: str, protocol: Protocol, path: Path | None, position: str | None, err: Console
) -> str:
    """Exit 2 with every step the station position's instruments cannot run (``path``
    None: the built-in simulated station); else the line that says what it reaches."""
    from ..runner import is_thermal
    from ..station import DEFAULT_STATION, StationError, load_station
    from ._station_check import range_summary, station_problems

    kind = "furnace" if is_thermal(protocol) else "cell"
    try:
        st = load_station(path) if path is not None else DEFAULT_STATION
        pos = st.position(position, kind)
        if pos.kind != kind:
            raise StationError(f"position {pos.name!r} is a {pos.kind} position, not a {kind} one")
    except StationError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    problems = station_problems(file, protocol, st, pos, kind)
    for line in problems:
        err.print(line, markup=False)
    if problems:
        err.print(
            f"{len(problems)} step(s) beyond what station {st.name!r}, position "
            f"{pos.name!r} reaches ({range_summary(st, pos)}).",
            style="red",
            markup=False,
        )
        raise typer.Exit(EXIT_INVALID)
    return f"station {st.name!r}, position {pos.name!r}: {range_summary(st, pos)}"


def schema(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON Schema here instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of a protocol file (for editor completion and checks)."""
    from labrig.protocols.schema import input_schema_text

    text = input_schema_text()
    if out is None:
        typer.echo(text, nl=False)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            Console(stderr=True).print(f"error: cannot write {out}: {exc.strerror}", markup=False)
            raise typer.Exit(2) from None
        typer.echo(f"wrote {out}")


def library() -> None:
    """List the protocol library: names (for `labrig validate NAME`), titles, sources."""
    table = Table(title="labrig protocol library", show_lines=True)
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("title")
    table.add_column("source", style="dim")
    for entry in list_library():
        table.add_row(entry.name, entry.title, entry.source)
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add validate, schema and library to the labrig command."""
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("library")(library)
